"""Kokoro ASR validation clips: identities apart from the far suite's, valid split, refused for training
(skipped with the reason when Kokoro is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.suites import kokoro
from training.suites.guard import HeldOutDataError, check_training_rows

pytestmark = [pytest.mark.slow,  # loads the 88 MB Kokoro model
              pytest.mark.skipif(kokoro.kokoro_available() is not None, reason=str(kokoro.kokoro_available()))]


def test_valid_voices_are_mixtures_none_of_them_a_far_identity():
    from training.suites.kokoro_valid import valid_voices

    far = {(v.voice_a, v.voice_b, v.weight) for v in kokoro.identities(seed=0)}
    voices = valid_voices(seed=1, count=8)
    assert len({v.name for v in voices}) == 8
    assert all(v.voice_a != v.voice_b and (v.voice_a, v.voice_b, v.weight) not in far for v in voices)


def test_two_validation_clips_are_built_and_refused_for_training(tmp_path: Path):
    from training.suites.kokoro_valid import build

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_manifest([ManifestRow(id=f"v{i}", path=f"audio/v{i}.flac", duration_s=1.0, split="valid", task="asr",
                                speaker="s", text=text) for i, text in enumerate(["turn it down", "go away"])],
                   corpus / "asr.jsonl")
    summary = build(tmp_path / "out", corpus, clips=2, voices=2, seed=1)
    assert summary["counts"]["asr"]["per_split"] == {"valid": 2}
    assert summary["runtime"] == kokoro.runtime() and summary["runtime"]["onnxruntime"]  # the audio depends on it
    built = read_manifest(tmp_path / "out" / "asr.jsonl", check_exists=True)
    assert {row.text for row in built} == {"turn it down", "go away"}
    with pytest.raises(HeldOutDataError, match="Kokoro"):
        check_training_rows([row.__class__(**{**row.to_dict(), "split": "train"}) for row in built])
