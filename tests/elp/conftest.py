"""Tiny real backbones of every family (the session's shared checkpoints, tests/conftest.py),
loaded like a checkpoint."""

from __future__ import annotations

import pytest

from elp import load_backbone

VARIANTS = [
    ("wav2vec2", False), ("wav2vec2", True), ("hubert", False), ("hubert", True),
    ("wavlm", False), ("wavlm", True), ("whisper", False),
]
VARIANT_IDS = [f"{family}-{'preln' if stable else 'postln'}" for family, stable in VARIANTS]


@pytest.fixture(scope="session")
def backbone_dirs(tiny_backbone_dir):
    return {
        variant_id: tiny_backbone_dir(family, stable)
        for variant_id, (family, stable) in zip(VARIANT_IDS, VARIANTS, strict=True)
    }


#: the served family (whisper) and the server tests' (wavlm post-LN) stay in the fast tier; the other
#: variants of the same tests (~4 minutes on 2 shared cores) run with the slow tier
FAST_VARIANTS = ("whisper-postln", "wavlm-postln")


@pytest.fixture(params=[pytest.param(v, marks=() if v in FAST_VARIANTS else pytest.mark.slow) for v in VARIANT_IDS])
def variant(request):
    return request.param


@pytest.fixture
def backbone(backbone_dirs, variant):
    return load_backbone(backbone_dirs[variant])


@pytest.fixture(scope="session")
def whisper_dir(tiny_backbone_dir):
    """The tiny Whisper checkpoint (pre-LN as Whisper is; the decoder-set tests read its decoder)."""
    return tiny_backbone_dir("whisper", False)


@pytest.fixture(scope="module")
def whisper_model(whisper_dir):
    """The tiny checkpoint as transformers' whole model (encoder and decoder): the decoder-set tests' reference."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()


@pytest.fixture(scope="module")
def whisper_backbone(whisper_dir):
    """The tiny checkpoint loaded as a served backbone (not parametrised, unlike ``backbone``)."""
    return load_backbone(whisper_dir)
