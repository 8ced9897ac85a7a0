"""Short-clip trials of the realvox validation voices: only validation voices, only source clips in the
length range, at most ``per_voice`` a voice, balanced trials, linked voices never impostors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import realvox_short, realvox_trials
from training.data.manifest import ManifestRow, read_manifest, read_trials, write_manifest

#: source clip lengths of every voice: two too short, two too long for the default 0.3-2.0 s
LENGTHS_S = (0.1, 0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 1.9, 2.5, 4.0)


def fixture_source(root: Path, source: str, voices: dict[str, str]) -> Path:
    """A realvox-like source whose segments each name two real source clips of the lengths above."""
    rng = np.random.default_rng(0)
    rows = []
    for voice, group in voices.items():
        clips = []
        for k, seconds in enumerate(LENGTHS_S):
            clip = f"pkg/{voice}/{k}.flac"
            (root / clip).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / clip, 0.1 * rng.standard_normal(int(seconds * 22050)).astype(np.float32), 22050)
            clips.append(clip)
        for k in range(len(clips)):
            relative = f"segments/{voice}/{voice}-{k:03d}.flac"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / relative, np.zeros(1600, dtype=np.float32), 16000)
            rows.append(ManifestRow(id=f"{voice}-{k:03d}", path=relative, duration_s=2.5, split="train",
                                    task="verification", speaker=voice, label=voice,
                                    meta={"group": group, "source": source, "human": True,
                                          "clips": [clips[k], clips[(k + 1) % len(clips)]]}))
    return write_manifest(rows, root / "verification.jsonl")


@pytest.fixture()
def realvox_valid(tmp_path: Path) -> tuple[list[str], Path]:
    sources = [str(fixture_source(tmp_path / "rv-a", "pkg-a", {"a-1": "a-1", "a-2": "a-2", "a-3": "a-3",
                                                                 "a-ru-0": "a-ru", "a-ru-1": "a-ru"})),
               str(fixture_source(tmp_path / "rv-b", "pkg-b", {"b-1": "b-1", "b-2": "b-2", "b-3": "b-3"}))]
    suite = tmp_path / "realvox-valid"
    args = realvox_trials.parser().parse_args([*sources, "--out", str(suite), "--per-voice", "3",
                                               "--cohort-per-voice", "2", "--trials", "40"])
    realvox_trials.build(sources, suite, args)
    return sources, suite


def build(sources: list[str], suite: Path, out: Path, *extra: str) -> dict:
    args = realvox_short.parser().parse_args([*sources, "--suite", str(suite), "--out", str(out), "--trials", "60",
                                              *extra])
    return realvox_short.build(sources, out, args)


def test_short_clips_of_the_validation_voices_only(tmp_path: Path, realvox_valid: tuple[list[str], Path]) -> None:
    sources, suite = realvox_valid
    out = tmp_path / "short"
    build(sources, suite, out, "--per-voice", "5")
    info = json.loads((suite / "suite.json").read_text())
    rows = read_manifest(out / "verification.jsonl", check_exists=True)
    assert {r.speaker for r in rows} == set(info["valid_voices"])
    for voice in info["valid_voices"]:
        mine = [r for r in rows if r.speaker == voice]
        assert len(mine) == 5  # six clips are in range; the cap holds
        assert all(0.3 <= r.duration_s <= 2.0 for r in mine)
        assert all(sf.info(r.path).samplerate == 16000 for r in mine)
    trials = read_trials(out / "verification_trials_valid.txt", check_exists=True)
    labels = [t.label for t in trials]
    assert labels.count(1) == labels.count(0) > 10
    speaker = {r.path: r.speaker for r in rows}
    linked = {frozenset(p) for part in info["components"] for p in [(a, b) for a in part for b in part if a != b]}
    for trial in trials:
        same = speaker[trial.path_a] == speaker[trial.path_b]
        assert same == (trial.label == 1)
        assert trial.label == 1 or frozenset((speaker[trial.path_a], speaker[trial.path_b])) not in linked
    assert (out / "READY").is_file()


def test_same_seed_same_clips(tmp_path: Path, realvox_valid: tuple[list[str], Path]) -> None:
    sources, suite = realvox_valid
    build(sources, suite, tmp_path / "one")
    build(sources, suite, tmp_path / "two")
    assert (tmp_path / "one/verification_trials_valid.txt").read_text() == \
        (tmp_path / "two/verification_trials_valid.txt").read_text()
    build(sources, suite, tmp_path / "seed0", "--per-voice", "2")
    build(sources, suite, tmp_path / "seed1", "--per-voice", "2", "--seed", "1")
    chosen = [{r.meta["source_clip"] + r.speaker for r in read_manifest(tmp_path / f"seed{s}/verification.jsonl")}
              for s in (0, 1)]
    assert chosen[0] != chosen[1]


def test_a_voice_without_source_clips_is_an_error(tmp_path: Path, realvox_valid: tuple[list[str], Path]) -> None:
    sources, suite = realvox_valid
    with pytest.raises(ValueError, match="no source clips"):
        build(sources[:1], suite, tmp_path / "short")
