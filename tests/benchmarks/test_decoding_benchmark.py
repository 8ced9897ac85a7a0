"""The decoding benchmark's grid: every decoder scored on the same log-probabilities, the set left as it was."""

from __future__ import annotations

from benchmarks.decoding import decode_grid
from elp import load_backbone
from elp.decoding import WordBigramLM
from elp.testing import make_random_adapter_set, spelled_log_probs


def test_decode_grid_scores_greedy_and_each_beam_against_the_baseline(tiny_backbone_dir) -> None:
    adapter_set = make_random_adapter_set(load_backbone(tiny_backbone_dir("whisper")), "asr")
    lm = WordBigramLM.build(["open the door", "turn on the lights"], alpha=0.5, beta=1.0, beam_width=8)
    adapter_set.attach_language_model(lm)
    clips = [(text, spelled_log_probs(text)) for text in ("open the door", "turn on the lights")]
    rows = decode_grid(adapter_set, clips, [4, 8])
    assert [(r["decoder"], r["beam"], r["lookahead"]) for r in rows] == [
        ("greedy", None, None), ("beam", 4, False), ("beam", 4, True), ("beam", 8, False), ("beam", 8, True),
        ("beam", 32, False), ("beam", 32, True)]
    assert all(r["cer"] == 0.0 and r["wer"] == 0.0 for r in rows)  # clean one-hot paths decode exactly
    assert next(r for r in rows if r["beam"] == 32 and not r["lookahead"])["time_ratio"] == 1.0
    assert [r["shipped"] for r in rows].count(True) == 1 and rows[3]["shipped"]
    assert adapter_set.language_model is lm and adapter_set.config.language_model.beam_width == 8  # restored
    assert {r["temperature"] for r in rows} == {None, 1.0}  # a set at temperature 1 adds no other rows


def test_decode_grid_adds_the_set_s_own_temperature_beside_temperature_one(tiny_backbone_dir) -> None:
    adapter_set = make_random_adapter_set(load_backbone(tiny_backbone_dir("whisper")), "asr")
    lm = WordBigramLM.build(["open the door"], alpha=0.5, beta=1.0, beam_width=4, temperature=1.5)
    adapter_set.attach_language_model(lm)
    rows = decode_grid(adapter_set, [("open the door", spelled_log_probs("open the door"))], [4])
    assert [(r["beam"], r["lookahead"], r["temperature"]) for r in rows[1:]] == [
        (4, False, 1.0), (4, True, 1.0), (32, False, 1.0), (32, True, 1.0),
        (4, False, 1.5), (4, True, 1.5), (32, False, 1.5), (32, True, 1.5)]
    shipped = [r for r in rows if r["shipped"]]
    assert [(r["beam"], r["lookahead"], r["temperature"]) for r in shipped] == [(4, False, 1.5)]
    assert next(r for r in rows if (r["beam"], r["lookahead"], r["temperature"]) == (32, False, 1.0))[
        "time_ratio"] == 1.0  # the baseline stays the old decoder
    assert adapter_set.config.language_model.temperature == 1.5  # restored
