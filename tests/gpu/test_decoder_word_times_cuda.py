"""On a CUDA device: a decoder set's transcripts, word times and confidences equal the CPU's. Skipped without
CUDA (CI has none); run on a lent GPU with ``pytest -m gpu``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from elp import MultiAdapterModel, load_backbone
from elp.convert.whisper_decoder_set import build_decoder_set
from elp.testing import seeded_waveform
from tests.elp.test_decoder_word_times import TOKENS, decoder_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CLIPS = [seeded_waveform(seconds, seed=seed) for seed, seconds in enumerate((1.6, 0.7, 2.4))]


def served_answers(whisper_dir: Path, device: str) -> list:
    """The clips answered by a timed tiny decoder set on ``device``, as the server prepares it."""
    backbone = load_backbone(str(whisper_dir), device=device)
    decoder = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval().model.decoder
    adapter_set = build_decoder_set(decoder, backbone, TOKENS, decoder_config())
    model = MultiAdapterModel(backbone)
    model.add_adapter_set("asr-whisper", adapter_set)
    adapter_set.task_spec.prepare_for_serving(adapter_set, {})
    return model.eval().predict(CLIPS, ["asr-whisper"] * len(CLIPS))


def assert_same_words(expected: list, got: list) -> None:
    for want, have in zip(expected, got, strict=True):
        assert have.text == want.text
        assert [w[0] for w in have.words or []] == [w[0] for w in want.words or []]
        if want.words:  # a boundary may move by a frame (2 of 80+ frames) on another device's floats
            np.testing.assert_allclose([w[1:3] for w in have.words], [w[1:3] for w in want.words], atol=0.03)
            np.testing.assert_allclose([w[3] for w in have.words], [w[3] for w in want.words], atol=1e-3)


def test_cuda_gives_the_cpus_word_times(tiny_backbone_dir) -> None:
    whisper_dir = tiny_backbone_dir("whisper", False)
    assert_same_words(served_answers(whisper_dir, "cpu"), served_answers(whisper_dir, "cuda"))
