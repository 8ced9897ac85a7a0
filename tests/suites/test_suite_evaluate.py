"""elp-evaluate --suite on a tiny suite: the records come from the real metric code, the served
threshold's error rates are right on a known case, and the table puts suites side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from training.data.manifest import ManifestRow, write_manifest
from training.metrics import cer, compute_eer, wer
from training.suites.evaluate import DATASETS, Options, _rates, evaluate_on_suites, scored_rows, spread
from training.suites.report import markdown

from .fixtures import tone


def test_served_threshold_rates_on_a_known_case() -> None:
    scores, labels = np.array([0.9, 0.8, 0.6, 0.3, 0.2]), np.array([1, 1, 0, 0, 1])
    assert _rates(scores, labels, 0.5) == {"false_accept": 0.5, "false_reject": 1 / 3}
    assert _rates(scores, labels, 0.85)["false_reject"] == 2 / 3
    # each trial its own threshold (a duration table): the third trial's impostor passes at 0.55 only
    per_trial = np.array([0.95, 0.5, 0.55, 0.5, 0.5])
    assert _rates(scores, labels, per_trial) == {"false_accept": 0.5, "false_reject": 2 / 3}


def test_served_thresholds_read_the_sets_duration_table(tmp_path) -> None:
    from types import SimpleNamespace

    from training.suites.evaluate import served_thresholds

    for name, seconds in (("short", 0.5), ("long", 3.0)):
        sf.write(tmp_path / f"{name}.flac", np.zeros(int(seconds * 16000), np.float32), 16000)
    trials = [SimpleNamespace(path_a=str(tmp_path / a), path_b=str(tmp_path / b))
              for a, b in (("short.flac", "long.flac"), ("long.flac", "long.flac"))]
    table = SimpleNamespace(threshold=0.6, duration_thresholds=[[0.0, 0.4], [1.0, 0.7]])
    assert served_thresholds(table, trials).tolist() == [0.4, 0.7]
    assert served_thresholds(SimpleNamespace(threshold=0.6, duration_thresholds=None), trials).tolist() == [0.6, 0.6]
    assert served_thresholds(SimpleNamespace(threshold=None, duration_thresholds=None), trials) is None


def test_held_out_phrasings_a_shipped_set_heard_do_not_count_but_stay_held_out() -> None:
    from training.suites.guard import held_out_reason
    from training.suites.phrasings import SEEN_IN_TRAINING, held_out_set

    def row(i: int, text: str) -> ManifestRow:
        return ManifestRow(id=f"r{i}", path=f"/nowhere/{i}.flac", duration_s=1.0, split="test", task="intent",
                           speaker="s", text=text, label="increase_volume_none")

    seen = sorted(SEEN_IN_TRAINING)[0]
    rows = [row(0, seen), row(1, "um could you please crank it up"), row(2, seen + " ")]
    phrasings = {d.name: d for d in DATASETS["intent"]}
    assert scored_rows(phrasings["near-phrasings"], rows) == ([rows[1]], 2)
    assert scored_rows(phrasings["far-phrasings"], rows) == ([rows[1]], 2)
    assert scored_rows(phrasings["near"], rows) == (rows, 0)  # the corpus' own test phrasings: all count
    assert SEEN_IN_TRAINING.issubset(held_out_set())  # still refused for training:
    assert held_out_reason(row(3, seen)) is not None


def test_spread_keeps_both_ends_and_everything_when_uncapped() -> None:
    assert spread(list(range(10)), 3) == [0, 4, 9] or spread(list(range(10)), 3) == [0, 5, 9]
    assert spread([1, 2], 0) == [1, 2] and spread([1, 2], 5) == [1, 2]


def test_markdown_puts_the_suites_side_by_side() -> None:
    records = [{"set": "asr-x", "task": "asr", "system": "ours", "data": s, "suite": s, "variant": "",
                "subset": False, "cer": c, "wer": 2 * c, "n": 10} for s, c in (("near", 0.1), ("human", 0.25))]
    text = markdown(records, "elp-evaluate --suite all x")
    assert "| asr-x | ours | CER | 10.0% (10) |  | 25.0% (10) |" in text and "elp-evaluate --suite all x" in text


def test_markdown_pairs_each_set_with_the_first_of_its_task_on_the_same_clips() -> None:
    def record(name: str, task: str, suite: str, **per_clip: list[list[int]]) -> dict:
        clips = len(next(iter(per_clip.values())))
        return {"set": name, "task": task, "system": "ours", "data": suite, "suite": suite, "variant": "",
                "subset": False, "n": clips, "per_clip": {"ids": [f"c{i}" for i in range(clips)], **per_clip}}

    old, new = [[2, 10]] * 40, [[1, 10]] * 40
    text = markdown([record("asr-old", "asr", "human", word=old, char=[[4, 30]] * 40),
                     record("asr-new", "asr", "human", word=new, char=[[2, 30]] * 40),
                     record("asr-new", "asr", "far", word=new),  # no asr-old row on far: nothing to pair there
                     record("intent-old", "intent", "near", label=[[1, 1]] * 10 + [[0, 1]] * 30),
                     record("intent-new", "intent", "near", label=[[0, 1]] * 40)])
    assert "| asr-new | asr-old | human | 40 | CER | -6.7 [-6.7, -6.7] | 100% |" in text
    assert "| asr-new | asr-old | human | 40 | WER | -10.0 [-10.0, -10.0] | 100% |" in text
    assert "| asr-new | asr-old | far |" not in text
    assert "| intent-new | intent-old | near | 40 | accuracy | +25.0 [+" in text  # accuracy rose: a positive gain
    assert "against" not in markdown([record("asr-old", "asr", "human", word=old)])


def _tiny_suite(folder: Path) -> None:
    rows, asr = [], []
    for speaker, seed in (("s1", 0), ("s1", 1), ("s2", 2), ("s2", 3), ("s3", 4)):
        path = folder / "audio" / f"{speaker}-{seed}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(1.2, 16000, 10 * int(speaker[1]) + seed % 2), 16000, subtype="PCM_16", format="FLAC")
        rows.append(ManifestRow(f"{speaker}-{seed}", str(path), 1.2, "test", "verification", speaker, None, speaker))
        asr.append(ManifestRow(f"a{seed}", str(path), 1.2, "test", "asr", speaker, "go forward", None))
    # a prompt package's silence file listed as a speaker's clip: its trials have no served answer
    sf.write(folder / "audio" / "s1-silence.flac", np.zeros(16000, np.float32), 16000, format="FLAC")
    write_manifest(rows, folder / "verification.jsonl")
    write_manifest(asr, folder / "asr.jsonl")
    (folder / "verification_trials_test.txt").write_text(
        "1 audio/s1-0.flac audio/s1-1.flac\n1 audio/s2-2.flac audio/s2-3.flac\n"
        "0 audio/s1-0.flac audio/s3-4.flac\n0 audio/s2-3.flac audio/s3-4.flac\n"
        "1 audio/s1-0.flac audio/s1-silence.flac\n0 audio/s1-silence.flac audio/s3-4.flac\n")


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone_dir):
    from elp import MultiAdapterModel, load_backbone
    from elp.testing import make_random_adapter_set

    model = MultiAdapterModel(load_backbone(str(tiny_backbone_dir("whisper")))).eval()
    verification = make_random_adapter_set(model.backbone, "verification")
    verification.config.threshold = 0.5
    model.add_adapter_set("verify-x", verification)
    model.add_adapter_set("asr-x", make_random_adapter_set(model.backbone, "asr"))
    return model


@pytest.mark.slow  # a tiny real backbone, two sets, two suites (~16 s on 2 shared cores)
def test_suite_records_are_the_metric_codes_numbers(tmp_path: Path, tiny_model) -> None:
    _tiny_suite(tmp_path / "human")
    options = Options(folders={"corpus": tmp_path / "corpus", "far": tmp_path / "far", "human": tmp_path / "human",
                               "phrasings": tmp_path / "phrasings"}, suites=("near", "human"), baselines=[],
                      whisper_dir="")
    records = evaluate_on_suites(tiny_model, "verify-x", options, log=lambda *_: None)
    human = next(r for r in records if r["data"] == "human" and "missing" not in r)
    assert {r["data"] for r in records if "missing" in r} == {"near", "human-valid"}  # not built: named, not fatal
    waves = {p: torch.from_numpy(sf.read(tmp_path / "human" / "audio" / p, dtype="float32")[0])
             for p in ("s1-0.flac", "s1-1.flac", "s2-2.flac", "s2-3.flac", "s3-4.flac")}
    names = list(waves)
    embeddings = dict(zip(names, (p.embedding for p in tiny_model.predict(list(waves.values()),
                                                                         ["verify-x"] * 5)), strict=True))
    pairs = [("s1-0.flac", "s1-1.flac", 1), ("s2-2.flac", "s2-3.flac", 1), ("s1-0.flac", "s3-4.flac", 0),
             ("s2-3.flac", "s3-4.flac", 0)]
    scores = np.array([float(F.cosine_similarity(embeddings[a], embeddings[b], dim=0)) for a, b, _ in pairs])
    labels = np.array([label for _, _, label in pairs])
    assert human["n"] == 4 and human["eer"] == pytest.approx(compute_eer(scores, labels).eer, abs=1e-6)
    assert human["false_accept"] == pytest.approx(float((scores[2:] >= 0.5).mean()))
    asr = evaluate_on_suites(tiny_model, "asr-x", options, log=lambda *_: None)
    ours = next(r for r in asr if r["data"] == "human")
    hyps = [p.text or "" for p in tiny_model.predict(list(waves.values()), ["asr-x"] * 5)]
    assert ours["wer"] == pytest.approx(wer(["go forward"] * 5, hyps)) and ours["cer"] == pytest.approx(
        cer(["go forward"] * 5, hyps))
    words = np.array(ours["per_clip"]["word"])  # the per-clip counts behind the paired comparison add up
    assert ours["per_clip"]["ids"] == ["a0", "a1", "a2", "a3", "a4"]
    assert words[:, 0].sum() / words[:, 1].sum() == pytest.approx(ours["wer"])
