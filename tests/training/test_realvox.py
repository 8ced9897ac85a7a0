"""The real-voice training source (KLettres): suite speakers are refused, folders split by voice, and the
segments are the same for the same clips and seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.corpus import realvox

SR = realvox.SAMPLE_RATE


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def test_a_voice_near_a_suite_speaker_is_refused():
    suite = {"june": unit([1, 0, 0, 0]), "carlo": unit([0, 1, 0, 0])}
    voices = {
        "klettres-fr": unit([0.97, 0.1, 0.2, 0.0]),  # cosine ~0.97 to june: maybe june herself
        "klettres-de": unit([0.3, 0.3, 0.9, 0.1]),  # far from both
        "klettres-it": unit([0.1, 0.86, 0.0, 0.5]),  # cosine ~0.86 to carlo: just over the 0.85 cap
    }
    kept, refused = realvox.refuse_suite_voices(voices, suite, max_cosine=0.85)
    assert kept == ["klettres-de"]
    assert refused["klettres-fr"][0] == "june" and refused["klettres-fr"][1] > 0.95
    assert refused["klettres-it"][0] == "carlo"
    with pytest.raises(ValueError):  # no suite centroids: nothing is checked, so nothing is built
        realvox.refuse_suite_voices(voices, {}, max_cosine=0.85)


def test_a_folder_with_two_voices_is_split_and_one_voice_is_not():
    rng = np.random.default_rng(0)
    a, b = unit(rng.standard_normal(16)), unit(rng.standard_normal(16))
    one = np.stack([a + 0.1 * rng.standard_normal(16) for _ in range(30)])
    two = np.concatenate([one, np.stack([b + 0.1 * rng.standard_normal(16) for _ in range(20)])])
    assert [len(p) for p in realvox.split_speakers(one, split_below=0.75, min_clips=8)] == [30]
    parts = realvox.split_speakers(two, split_below=0.75, min_clips=8)
    assert sorted(len(p) for p in parts) == [20, 30]
    assert {int(i) for i in parts[0]} in ({*range(30)}, {*range(30, 50)})


def clips(count: int = 9) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(-0.3, 0.3, int(SR * (0.4 + 0.1 * (k % 5)))).astype(np.float32) for k in range(count)]


def test_segments_are_deterministic_and_2_to_4_seconds_long():
    first = realvox.build_segments(clips(), seed="0|klettres-de", passes=2)
    again = realvox.build_segments(clips(), seed="0|klettres-de", passes=2)
    other = realvox.build_segments(clips(), seed="1|klettres-de", passes=2)
    assert [run for _, run in first] == [run for _, run in again]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(first, again, strict=True))
    assert [run for _, run in first] != [run for _, run in other]
    # every clip is used once per pass
    assert sorted(i for _, run in first for i in run) == sorted(list(range(9)) * 2)
    seconds = [audio.size / SR for audio, _ in first]
    assert min(seconds) >= 1.5 and max(seconds) <= 4.0 + 1.0 + 0.3, seconds


def test_trim_drops_the_silence_around_a_clip():
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(SR // 2) / SR).astype(np.float32)
    padded = np.concatenate([np.zeros(SR // 4, np.float32), tone, np.zeros(SR // 4, np.float32)])
    trimmed = realvox.trim(padded)
    assert abs(trimmed.size - tone.size) <= SR // 50


def test_training_paths_cap_each_speaker_in_manifest_order(tmp_path, capsys):
    rows = [{"speaker": spk, "path": f"segments/{spk}/{spk}-{n}.flac"} for spk in ("a", "b") for n in range(5)]
    manifest = tmp_path / "verification.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows[:2] + rows[5:] + rows[2:5]))
    names = [p.rsplit("/", 1)[1] for p in realvox.balanced_paths(manifest, per_speaker=3)]
    assert names == ["a-0.flac", "a-1.flac", "b-0.flac", "b-1.flac", "b-2.flac", "a-2.flac"]
    assert realvox.main(["--list", str(manifest), "--per-speaker", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / f"segments/{s}/{s}-0.flac") for s in "ab"]
