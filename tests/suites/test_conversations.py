"""Simulated diarization conversations: the pure composition rules on tiny arrays, and a whole folder built from
a tiny manifest of tone clips (turns, gaps, Kokoro voice conflicts, RTTM, reader, determinism)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.suites.fixtures import tone
from training.data.manifest import ManifestRow, write_manifest
from training.suites import conversations as cv
from training.suites import utterances as ut

RATE = 16000


def check_turns(turns, duration_s, length_s, speakers_min=2):
    starts = [a for a, _, _ in turns]
    assert starts == sorted(starts)
    for (a0, b0, _), (a1, b1, _) in itertools.pairwise(turns):
        assert a0 < b0 <= a1 < b1
        assert cv.GAPS_S[0] - 0.002 <= a1 - b0 <= cv.GAPS_S[1] + 0.002
    counts = {}
    for _, _, s in turns:
        counts[s] = counts.get(s, 0) + 1
    assert len(counts) >= speakers_min and min(counts.values()) >= cv.MIN_TURNS
    assert length_s[0] <= duration_s <= length_s[1] + 1e-3
    assert turns[-1][1] < duration_s


def test_kokoro_conflicts():
    assert cv.kokoro_components("kokoro-jf_alpha") == {"jf_alpha"}
    assert cv.kokoro_components("kokoro-mix-jf_alpha-jf_nezumi") == {"jf_alpha", "jf_nezumi"}
    assert cv.kokoro_components("kokoro-valid-3-jf_tebukuro-jf_nezumi") == {"jf_tebukuro", "jf_nezumi"}
    assert cv.kokoro_components("spk-test-001") == frozenset()
    assert cv.conflict("kokoro-jf_alpha", "kokoro-mix-jf_alpha-jf_nezumi")
    assert cv.conflict("kokoro-valid-1-jm_kumo-jf_nezumi", "kokoro-valid-4-jm_kumo-jf_nezumi")
    assert cv.conflict("kokoro-mix-jf_alpha-jm_kumo", "kokoro-mix-jf_nezumi-jm_kumo")
    assert not cv.conflict("kokoro-jf_alpha", "kokoro-mix-jf_tebukuro-jf_nezumi")
    assert not cv.conflict("spk-a", "spk-b") and cv.conflict("spk-a", "spk-a")
    assert cv.conflict("a", "b", frozenset({frozenset(("a", "b"))}))
    assert cv.max_compatible(["kokoro-valid-0-a-b", "kokoro-valid-1-b-c", "kokoro-valid-2-c-d"]) == 2
    assert cv.max_compatible([f"kokoro-v{i}" for i in range(6)]) == 4


def test_speaker_counts_spread_evenly():
    counts = cv.speaker_counts(30, 4, np.random.default_rng(0))
    assert sorted(set(counts)) == [2, 3, 4] and all(counts.count(k) == 10 for k in (2, 3, 4))
    assert cv.speaker_counts(5, 2, np.random.default_rng(0)) == [2] * 5


def test_trim_silence_keeps_the_margin():
    voiced = tone(1.0, RATE, 1)
    wave = np.concatenate([np.zeros(RATE // 2), voiced, np.zeros(RATE // 2)]).astype(np.float32)
    trimmed = ut.trim_silence(wave)
    assert abs(len(trimmed) / RATE - (1.0 + 2 * ut.MARGIN_S)) < ut.FRAME_S + ut.HOP_S
    assert len(ut.to_rate(voiced, 8000)) == 2 * len(voiced)


def test_level_sets_the_rms_and_never_clips():
    wave, limited = ut.level(tone(0.5, RATE, 2), -23.0)
    assert not limited and abs(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) + 23.0) < 0.01
    spike = np.zeros(RATE, dtype=np.float32)
    spike[100] = 1.0
    wave, limited = ut.level(spike, -20.0)
    assert limited and np.max(np.abs(wave)) <= ut.PEAK + 1e-6


def test_compose_rules_on_tiny_arrays():
    clips = {s: [tone(0.4 + 0.1 * i, RATE, 10 * k + i) for i in range(4)] for k, s in enumerate("abc")}
    length = (9.0, 14.0)
    made = cv.compose(clips, [0, 1], length_s=length)
    check_turns(made.turns, len(made.wave) / RATE, length, speakers_min=3)
    for (_, b0, _), (a1, _, _) in itertools.pairwise(made.turns):  # silence between turns
        assert not np.any(made.wave[int(b0 * RATE) + 16:int(a1 * RATE) - 16])  # turns: rounded to 1 ms
    for (a, b, s), (speaker, index) in zip(made.turns, made.picks, strict=True):
        assert s == speaker and abs((b - a) - len(clips[s][index]) / RATE) < 0.002
    again = cv.compose(clips, [0, 1], length_s=length)
    assert again.turns == made.turns and np.array_equal(again.wave, made.wave)
    assert cv.compose(clips, [0, 2], length_s=length).turns != made.turns
    with pytest.raises(ValueError):
        cv.compose({"a": [tone(3.0, RATE, 1)], "b": [tone(3.0, RATE, 2)]}, 0, length_s=(1.0, 5.0))


def test_rttm_lines():
    assert cv.rttm_lines("c1", [(0.5, 1.75, "x")]) == ["SPEAKER c1 1 0.500 1.250 <NA> <NA> x <NA> <NA>"]


@pytest.fixture
def far_data(tmp_path: Path) -> Path:
    """A tiny far-like manifest: five pure Kokoro voices and three mixtures, three tone clips each (one at 8 kHz)."""
    data = tmp_path / "data"
    speakers = [f"kokoro-v{i}" for i in range(5)] + ["kokoro-mix-v0-v1", "kokoro-mix-v2-v3", "kokoro-mix-v1-v4"]
    rows = []
    for k, speaker in enumerate(speakers):
        for i in range(3):
            rate = 8000 if i == 2 else RATE
            wave = np.concatenate([np.zeros(rate // 5), tone(0.5 + 0.1 * i, rate, 10 * k + i), np.zeros(rate // 5)])
            rel = f"audio/{speaker}-{i}.flac"
            (data / "far" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(data / "far" / rel, wave, rate, subtype="PCM_16")
            rows.append(ManifestRow(id=f"{speaker}-{i}", path=rel, duration_s=0.9, split="test", task="verification",
                                    speaker=speaker, label=speaker))
    write_manifest(rows, data / "far" / "verification.jsonl")
    return data


def test_a_folder_is_built_read_back_and_deterministic(far_data: Path, tmp_path: Path):
    spec = dataclasses.replace(cv.SPECS["conversations-far-test"], count=4)
    length = (15.0, 25.0)
    out = tmp_path / "out"
    summary = cv.build_suite("conversations-far-test", far_data, out, seed=0, length_s=length, spec=spec)
    assert (out / "READY").is_file() and summary["role"] == "test" and summary["counts"]["conversations"] == 4
    assert json.loads((out / "suite.json").read_text())["manifest_sha256"] == summary["manifest_sha256"]
    read = cv.read_conversations(out)
    assert [c.id for c in read] == [f"conversations-far-test-{i:03d}" for i in range(4)]
    rttm = (out / "reference.rttm").read_text().splitlines()
    assert rttm == [line for c in read for line in cv.rttm_lines(c.id, c.turns)]
    for c in read:
        assert c.path.is_absolute() and c.path.is_file() and c.split == "test"
        info = sf.info(c.path)
        assert info.samplerate == RATE and info.channels == 1 and abs(info.duration - c.duration_s) < 1e-3
        check_turns(c.turns, c.duration_s, length)
        assert c.speakers == tuple(dict.fromkeys(s for _, _, s in c.turns))
        assert not any(cv.conflict(a, b) for a, b in itertools.combinations(c.speakers, 2))
    assert max(len(c.speakers) for c in read) == 4  # five pure voices allow four speakers
    again = cv.build_suite("conversations-far-test", far_data, tmp_path / "again", seed=0, length_s=length, spec=spec)
    assert again["manifest_sha256"] == summary["manifest_sha256"]

    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "audio").iterdir())]

    assert digest(out) == digest(tmp_path / "again")


def test_a_pause_inside_a_clip_is_no_ones_speech() -> None:
    from training.suites.utterances import speech_turns

    rate = 16000
    rng = np.random.default_rng(0)

    def burst(seconds: float) -> np.ndarray:
        return (0.3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)

    def pause(seconds: float) -> np.ndarray:
        return (1e-5 * rng.standard_normal(int(seconds * rate))).astype(np.float32)

    split = speech_turns(rate, np.concatenate([burst(1.0), pause(0.6), burst(0.8)]), "a", rate)
    assert len(split) == 2 and split[0][0] == 1.0 and split[-1][1] == pytest.approx(3.4, abs=1e-3)
    assert split[0][1] == pytest.approx(2.0 + 0.05, abs=0.02) and split[1][0] == pytest.approx(2.6 - 0.05, abs=0.02)
    kept = speech_turns(0, np.concatenate([burst(1.0), pause(0.15), burst(0.8)]), "a", rate)
    assert kept == [(0.0, round(1.95, 3), "a")]
