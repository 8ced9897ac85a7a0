"""The adapter sets shipped in adapters_store/ on the real Whisper base encoder, on real speech.

Needs the converted backbone (scripts/setup_default_backbone.sh) and espeak-ng; skipped otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from training.dataset import load_audio
from training.metrics import cer

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = ROOT / "models" / "whisper-base"
STORE = ROOT / "adapters_store"
DEFAULTS = {"asr": "asr-default", "verification": "verify-default", "emotion": "emotion-default",
            "intent": "intent-default", "language": "language-default"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (BACKBONE / "model.safetensors").exists(), reason="run scripts/setup_default_backbone.sh"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


@pytest.fixture(scope="module")
def model():
    model = MultiAdapterModel(load_backbone(BACKBONE))
    for task, adapter_id in DEFAULTS.items():
        adapter_set = AdapterSet.load(STORE / adapter_id)
        assert adapter_set.task == task
        model.add_adapter_set(adapter_id, adapter_set)  # refused if the fingerprint differed
    return model


def speak(tmp_path: Path, text: str, voice: str = "en-us") -> torch.Tensor:
    path = tmp_path / f"{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    assert sf.info(path).frames > 0
    return torch.from_numpy(load_audio(str(path)))


def test_every_default_set_matches_the_converted_backbone_and_carries_its_metadata(model):
    verify = model.adapter_sets["verify-default"].config
    assert verify.threshold is not None and 0.0 < verify.threshold < 1.0
    assert model.adapter_sets["intent-default"].config.slot_names == ["action", "object", "location"]
    for adapter_id in DEFAULTS.values():
        assert "test" in model.adapter_sets[adapter_id].config.metrics
    # the intent set is built on the ASR set's E/P adapters, so the two route as one group
    asr, intent = (model.adapter_sets[key] for key in ("asr-default", "intent-default"))
    assert asr.backbone_change_signature() == intent.backbone_change_signature() is not None


def test_default_sets_answer_real_speech_in_one_mixed_batch(model, tmp_path):
    sentence = "the weather is lovely today and i would like to go for a walk"
    speech = speak(tmp_path, sentence)
    command = speak(tmp_path, "turn on the lights in the kitchen")
    same_voice = speak(tmp_path, "i am the same voice as before")
    other_voice = speak(tmp_path, "this is another speaker talking", voice="en-us+f3")
    rows = [speech, command, speech, speech, same_voice, other_voice]
    keys = ["asr-default", "intent-default", "emotion-default", "verify-default", "verify-default", "verify-default"]
    asr, intent, emotion, reference, same, other = model.predict(rows, keys)
    assert cer(sentence, asr.text) < 0.25, asr.text
    assert intent.label == "activate_lights_kitchen"
    assert emotion.label == "neutral"
    threshold = model.adapter_sets["verify-default"].config.threshold
    assert float(reference.embedding @ same.embedding) > threshold
    assert float(reference.embedding @ other.embedding) < threshold
