"""The level gate (``ELP_SPEECH_DETECTOR=level``): silence and near-silence are refused, any sounding clip
passes, at any rate. The voice gate, the default: tests/elp/test_voice_activity.py."""

from __future__ import annotations

import numpy as np
import pytest

from elp.speech_activity import HOP_S, SpeechGate, frame_levels_dbfs, true_runs

GATE = SpeechGate()
RATE = 16000


def burst(seconds_on: float, total_s: float = 2.0, level: float = 0.1, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Digital silence with ``seconds_on`` of seeded noise at ``level`` RMS in the middle."""
    clip = np.zeros(int(total_s * rate), dtype=np.float32)
    start, length = int((total_s - seconds_on) / 2 * rate), int(seconds_on * rate)
    clip[start:start + length] = level * np.random.default_rng(seed).standard_normal(length)
    return clip


def test_frame_levels_are_dbfs() -> None:
    t = np.arange(RATE) / RATE
    square = np.sign(np.sin(2 * np.pi * 100.5 * t)).astype(np.float32)
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert np.median(frame_levels_dbfs(square, RATE)) == pytest.approx(0.0, abs=0.1)
    assert np.median(frame_levels_dbfs(sine, RATE)) == pytest.approx(-3.01, abs=0.1)
    assert frame_levels_dbfs(np.zeros(RATE, np.float32), RATE).max() == pytest.approx(-120.0)
    # 25 ms frames every 10 ms: 1 s holds 98 whole frames; shorter than a frame is one frame
    assert frame_levels_dbfs(sine, RATE).size == 98 and frame_levels_dbfs(sine[:100], RATE).size == 1
    assert frame_levels_dbfs(np.zeros(0, np.float32), RATE).size == 0


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_silence_and_near_silence_are_refused_sound_passes(rate: int) -> None:
    silent = np.zeros(2 * rate, dtype=np.float32)
    dither = (1e-4 * np.random.default_rng(1).standard_normal(2 * rate)).astype(np.float32)  # -80 dBFS
    assert GATE.active_seconds(silent, rate) == 0.0 and not GATE.has_speech(silent, rate)
    assert not GATE.has_speech(dither, rate)
    assert not GATE.has_speech(burst(0.2, rate=rate), rate)  # a click or a cough-length sound
    assert GATE.has_speech(burst(0.5, rate=rate), rate)
    assert GATE.active_seconds(burst(1.0, rate=rate), rate) == pytest.approx(1.0, abs=3 * HOP_S)


def test_the_floor_is_a_level() -> None:
    quiet = burst(1.0, level=10 ** (-60 / 20))  # speech-length sound at -60 dBFS: under the -55 floor
    assert not GATE.has_speech(quiet, RATE)
    assert SpeechGate(floor_dbfs=-65.0).has_speech(quiet, RATE)
    assert "0.3 s" in GATE.describe() and "-55 dBFS" in GATE.describe()



def test_true_runs_are_half_open_ranges_in_order() -> None:
    assert true_runs(np.array([1, 1, 0, 0, 1, 0, 1], dtype=bool)) == [(0, 2), (4, 5), (6, 7)]
    assert true_runs(np.zeros(4, dtype=bool)) == [] and true_runs(np.zeros(0, dtype=bool)) == []
