"""The real-voice validation set: whole voices (linked ones together) on each side of the split,
balanced trials, no impostor pair between linked voices, no suite speaker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import realvox_trials
from training.data.manifest import ManifestRow, read_manifest, read_trials, write_manifest


def fixture_source(root: Path, source: str, voices: dict[str, str], segments: int = 9) -> Path:
    """A realvox-like source: ``voices`` maps voice -> package group; each segment joins two clips."""
    rows = []
    for voice, group in voices.items():
        for k in range(segments):
            relative = f"segments/{voice}/{voice}-{k:03d}.flac"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / relative, np.zeros(1600, dtype=np.float32), 16000)
            clips = [f"pkg/{voice}/{(k + j) % segments}.ogg" for j in range(2)]  # neighbours share a clip
            rows.append(ManifestRow(id=f"{voice}-{k:03d}", path=relative, duration_s=2.5, split="train",
                                    task="verification", speaker=voice, label=voice,
                                    meta={"group": group, "source": source, "human": True, "clips": clips}))
    return write_manifest(rows, root / "verification.jsonl")


def arguments(out: Path, **overrides) -> object:
    args = realvox_trials.parser().parse_args([str(out), "--out", str(out), "--per-voice", "4",
                                               "--cohort-per-voice", "2", "--trials", "60"])
    vars(args).update(overrides)
    return args


@pytest.fixture()
def sources(tmp_path: Path) -> list[str]:
    a = fixture_source(tmp_path / "rv-a", "pkg-a", {"a-1": "a-1", "a-2": "a-2", "a-3": "a-3", "a-4": "a-4",
                                                     "a-ru-0": "a-ru", "a-ru-1": "a-ru"})
    b = fixture_source(tmp_path / "rv-b", "pkg-b", {"b-1": "b-1", "b-2": "b-2", "b-3": "b-3", "b-4": "b-4"})
    return [str(a), str(b)]


def test_split_keeps_linked_voices_together_and_trials_are_balanced(tmp_path: Path, sources: list[str]) -> None:
    out = tmp_path / "valid"
    # a-2 and b-3 "sound like one person" (a hand link here; the teacher's centroids in real use)
    suite = tmp_path / "human"  # another validation list, pooled in
    suite.mkdir()
    (suite / "verification_trials_valid.txt").write_text("1 ../rv-b/segments/b-1/b-1-000.flac "
                                                         "../rv-b/segments/b-1/b-1-004.flac\n")
    summary = realvox_trials.build(sources, out, arguments(out, link=["a-2,b-3"],
                                                           pool=[str(suite / "verification_trials_valid.txt")]))
    valid, cohort = set(summary["valid_voices"]), set(summary["cohort_voices"])
    assert valid and cohort and not valid & cohort and len(valid | cohort) == 10
    for part in (["a-ru-0", "a-ru-1"], ["a-2", "b-3"]):
        assert set(part) <= valid or set(part) <= cohort
    trials = read_trials(out / "verification_trials_valid.txt", check_exists=True)
    labels = [t.label for t in trials]
    assert labels.count(1) == labels.count(0) > 10
    rows = {r.path: r for r in read_manifest(out / "verification.jsonl")}
    assert {r.speaker for r in rows.values()} == valid
    linked = {frozenset(("a-ru-0", "a-ru-1")), frozenset(("a-2", "b-3"))}
    for trial in trials:
        a, b = rows[trial.path_a], rows[trial.path_b]
        if trial.label == 0:
            assert a.speaker != b.speaker and frozenset((a.speaker, b.speaker)) not in linked
        else:
            assert a.speaker == b.speaker and not set(a.meta["clips"]) & set(b.meta["clips"])
    pooled = read_trials(out / "verification_trials_pooled.txt", check_exists=True)
    assert pooled[: len(trials)] == trials and len(pooled) == len(trials) + 1
    assert pooled[-1].path_a == str(tmp_path / "rv-b/segments/b-1/b-1-000.flac")
    cohort_rows = read_manifest(out / "cohort.jsonl", check_exists=True)
    assert {r.speaker for r in cohort_rows} == cohort
    assert all("rv-" in r.path for r in cohort_rows)  # the originals, not copies inside the suite folder
    assert (out / "READY").is_file() and json.loads((out / "suite.json").read_text())["seed"] == 0


def test_same_seed_same_set_and_other_seed_other_split(tmp_path: Path, sources: list[str]) -> None:
    first = realvox_trials.build(sources, tmp_path / "one", arguments(tmp_path / "one"))
    again = realvox_trials.build(sources, tmp_path / "two", arguments(tmp_path / "two"))
    assert (tmp_path / "one/verification_trials_valid.txt").read_text() == \
        (tmp_path / "two/verification_trials_valid.txt").read_text()
    assert first["valid_voices"] == again["valid_voices"]
    splits = {tuple(realvox_trials.build(sources, tmp_path / f"s{seed}", arguments(tmp_path / f"s{seed}",
                                                                                   seed=seed))["valid_voices"])
              for seed in range(4)}
    assert len(splits) > 1


def test_a_human_suite_speaker_is_refused(tmp_path: Path) -> None:
    manifest = fixture_source(tmp_path / "rv", "pkg", {"x-1": "x-1", "allison": "allison"})
    with pytest.raises(ValueError, match="human-suite speaker"):
        realvox_trials.build([str(manifest)], tmp_path / "out", arguments(tmp_path / "out"))
