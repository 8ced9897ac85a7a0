"""Tiny real backbones of every family, saved once per session and loaded like a checkpoint."""

from __future__ import annotations

import pytest

from elp import load_backbone
from elp.testing import save_tiny_backbone

VARIANTS = [
    ("wav2vec2", False), ("wav2vec2", True), ("hubert", False), ("hubert", True),
    ("wavlm", False), ("wavlm", True), ("whisper", False),
]
VARIANT_IDS = [f"{family}-{'preln' if stable else 'postln'}" for family, stable in VARIANTS]


@pytest.fixture(scope="session")
def backbone_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {
        variant_id: save_tiny_backbone(root / variant_id, family, stable)
        for variant_id, (family, stable) in zip(VARIANT_IDS, VARIANTS, strict=True)
    }


@pytest.fixture(params=VARIANT_IDS)
def variant(request):
    return request.param


@pytest.fixture
def backbone(backbone_dirs, variant):
    return load_backbone(backbone_dirs[variant])
