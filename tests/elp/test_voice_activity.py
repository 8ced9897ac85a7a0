"""The voice detector: the batched model equals silero-vad's own, chunk by chunk; a voice passes the voice
gate, and silence, noise, hum and tones, which the level gate lets through, do not."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from elp.speech_activity import SpeechGate, VoiceGate
from elp.tasks import get_task
from elp.voice_activity import (
    CHUNK,
    load_package_model,
    load_silero,
    package_model_path,
    package_probabilities,
    speech_probabilities,
)

RATE = 16000


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return (x * 10 ** (dbfs / 20)).astype(np.float32)


def tones(seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Sound without a voice at a tenth of full scale: mains hum with harmonics, a tone, two-tone beeps."""
    t = np.arange(int(seconds * RATE)) / RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    beeps = (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)) * ((t * 4) % 1 < 0.5)
    return {name: (0.1 * x / np.abs(x).max()).astype(np.float32)
            for name, x in {"hum": hum, "tone": np.sin(2 * np.pi * 440 * t), "beeps": beeps}.items()}


def hum(seconds: float = 3.0) -> np.ndarray:
    return tones(seconds)["hum"]


def test_batched_model_equals_the_packages(spoken_clip) -> None:
    speech = spoken_clip("the quick brown fox jumps over the lazy dog")
    clip = np.concatenate([noise(0.5, -40), speech, noise(0.7, -40, seed=1)]).astype(np.float32)
    ours, theirs = speech_probabilities(clip, RATE), package_probabilities(load_package_model(), clip)
    assert ours.shape == theirs.shape == (-(-clip.size // CHUNK),)
    assert np.abs(ours - theirs).max() < 1e-4
    assert theirs.max() > 0.9 and theirs.min() < 0.1  # the clip has speech and non-speech chunks


def test_a_voice_passes_noise_and_tones_do_not(spoken_clip) -> None:
    gate, level = VoiceGate(), SpeechGate()
    assert gate.has_speech(spoken_clip("yes"), RATE)
    assert gate.has_speech(spoken_clip("bonjour, comment allez vous", voice="fr"), RATE)
    refused = {"silence": np.zeros(2 * RATE, np.float32), "noise": noise(3, -30), **tones()}
    for name, clip in refused.items():
        assert not gate.has_speech(clip, RATE), name
        assert name == "silence" or level.has_speech(clip, RATE), name  # what the level gate let through
    # the level floor holds whatever the detector says: no chunk of this voice is above -3 dBFS
    voice = spoken_clip("hello there")
    assert gate.has_speech(voice, RATE) and not VoiceGate(floor_dbfs=-3).has_speech(voice, RATE)
    assert "voice" in gate.describe() and "0.1 s" in gate.describe()


def test_verification_needs_a_voice() -> None:
    assert get_task("verification").speech_gate == VoiceGate()
    assert get_task("asr").speech_gate is None


def test_only_the_pinned_model_loads(tmp_path) -> None:
    tampered = tmp_path / "silero_vad.jit"
    tampered.write_bytes(package_model_path().read_bytes() + b"\0")
    with pytest.raises(RuntimeError, match="silero-vad 6.2.3"):
        load_silero(tampered)
    with pytest.raises(ValueError, match="16000 Hz"):
        speech_probabilities(np.zeros(8000, np.float32), 8000)
    assert speech_probabilities(np.zeros(0, np.float32), RATE).size == 0


@pytest.mark.skipif(shutil.which(sys.executable) is None, reason="no interpreter path")
def test_loading_keeps_torchs_thread_count() -> None:
    """``import silero_vad`` sets torch to one thread for the whole process; the detector must not."""
    code = ("import torch; torch.set_num_threads(2); from elp.voice_activity import shared_model; "
            "shared_model(); print(torch.get_num_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "2"


def test_the_detector_is_causal_so_a_prefix_decides_as_the_whole_clip(spoken_clip) -> None:
    """``VoiceGate.has_speech`` reads the first second first: its chunks must score as in the whole clip (to
    float rounding: batches of other sizes sum in another order)."""
    clip = np.concatenate([spoken_clip("one two three"), noise(2, -40), spoken_clip("four five")])
    whole = speech_probabilities(clip, RATE)
    for chunks in (1, 7, 32):
        assert np.allclose(speech_probabilities(clip[: chunks * CHUNK], RATE), whole[:chunks], atol=1e-5)
    gate = VoiceGate()
    steady = hum(4.0)
    cases = [clip, steady, np.concatenate([steady, spoken_clip("late words")]),
             np.concatenate([spoken_clip("a"), steady])]
    for case in cases:  # the prefix shortcut answers what the whole clip's seconds answer
        assert gate.has_speech(case, RATE) == (gate.active_seconds(case, RATE) >= gate.min_active_s)
    assert not gate.has_speech(steady, RATE) and gate.has_speech(cases[2], RATE)


def test_the_voice_pause_detector_cuts_in_noise_as_loud_as_the_speech(spoken_clip) -> None:
    """Sentences with pauses full of noise as loud as the voice: no level is a pause there, the voice
    detector's chunks are; every cut of ``pause_detector="voice"`` falls in a gap."""
    from elp.long_form import LongFormSplitter

    texts = ["the weather is fine today", "tomorrow it may rain in the north", "please call me back after nine",
             "the meeting moved to thursday", "bring the report and the slides", "we will start at ten sharp",
             "thank you and see you soon", "one more thing about the budget"]
    parts, voiced, clock = [], [], 0.0
    for k, text in enumerate(texts):
        speech = spoken_clip(text)
        sounding = np.flatnonzero(np.abs(speech) > 1e-3)
        speech = speech[sounding[0]:sounding[-1] + 1]  # no silent lead-in or tail: the noise meets the voice
        voiced.append((clock, clock + speech.size / RATE))
        parts.append(speech)
        clock += speech.size / RATE
        if k < len(texts) - 1:  # noise as loud as the voice
            parts.append(noise(0.8, float(10 * np.log10(np.mean(np.square(speech)))), seed=k))
            clock += 0.8
    gaps = [(a[1], b[0]) for a, b in zip(voiced, voiced[1:], strict=False)]
    recording = np.concatenate(parts).astype(np.float32)
    splitter = LongFormSplitter(max_segment_s=10.0, min_segment_s=1.0, min_pause_s=0.3, pause_detector="voice",
                                speech_gate=None)
    cuts = [start / RATE for start, _ in splitter.spans(recording, RATE)[1:]]
    assert len(cuts) >= 3 and all(any(a <= cut <= b for a, b in gaps) for cut in cuts), (cuts, gaps)
    with pytest.raises(ValueError, match="pause_detector"):
        LongFormSplitter(pause_detector="energy")
