"""The decoding benchmark's grid: every decoder scored on the same log-probabilities, the set left as it was."""

from __future__ import annotations

from benchmarks.decoding import decode_grid
from elp import load_backbone
from elp.decoding import WordBigramLM
from elp.testing import make_random_adapter_set, save_tiny_backbone, spelled_log_probs


def test_decode_grid_scores_greedy_and_each_beam_against_the_baseline(tmp_path) -> None:
    adapter_set = make_random_adapter_set(load_backbone(save_tiny_backbone(tmp_path / "w", "whisper")), "asr")
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
