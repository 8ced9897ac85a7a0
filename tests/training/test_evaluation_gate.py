"""The evaluation code applies the served speech gate: by default the voice detector (a hum gets ASR's
silence answer and its verification trials are left out), the level rule under ELP_SPEECH_DETECTOR=level."""

from __future__ import annotations

import pytest
import soundfile as sf

from elp.speech_activity import SpeechGate, VoiceGate, evaluation_gate, with_detector
from tests.elp.test_voice_activity import hum
from training.data.manifest import Trial
from training.evaluation import gated_trials

RATE = 16000


def test_the_detector_setting_moves_every_gate(monkeypatch) -> None:
    assert with_detector(VoiceGate(floor_dbfs=-60), "level") == SpeechGate(floor_dbfs=-60)
    assert with_detector(SpeechGate(), "voice") == SpeechGate() and with_detector(None, "level") is None
    with pytest.raises(ValueError, match="speech detector"):
        with_detector(VoiceGate(), "energy")
    monkeypatch.delenv("ELP_SPEECH_DETECTOR")
    assert evaluation_gate(VoiceGate()) == VoiceGate()


def test_trials_on_a_hum_are_left_out_by_default(tmp_path, spoken_clip, monkeypatch) -> None:
    paths = {}
    for name, clip in {"a": spoken_clip("one two three four"), "b": spoken_clip("five six seven"),
                       "hum": hum()}.items():
        paths[name] = str(tmp_path / f"{name}.wav")
        sf.write(paths[name], clip, RATE)
    trials = [Trial(1, paths["a"], paths["b"]), Trial(0, paths["a"], paths["hum"])]
    assert gated_trials(trials) == (trials, 0)  # this folder's conftest: the level rule
    monkeypatch.delenv("ELP_SPEECH_DETECTOR")
    assert gated_trials(trials) == (trials[:1], 1)
