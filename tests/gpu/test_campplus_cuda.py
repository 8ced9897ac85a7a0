"""On a CUDA device: the CAM++ voice branch's embeddings equal the CPU's, rows of mixed lengths in one call.
Skipped without CUDA (CI has none); run on a lent GPU with ``pytest -m gpu``."""

from __future__ import annotations

import pytest
import torch

from elp.heads.campplus import CamppBranch
from elp.testing import seeded_waveform

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_campplus_on_cuda_equals_cpu():
    torch.manual_seed(0)
    branch = CamppBranch().eval()
    clips = [seeded_waveform(seconds, seed=seed) * 0.2 for seed, seconds in enumerate((0.4, 2.3, 5.1))]
    padded = torch.zeros(len(clips), max(c.numel() for c in clips))
    for row, clip in enumerate(clips):
        padded[row, : clip.numel()] = clip
    lengths = torch.tensor([c.numel() for c in clips])
    with torch.no_grad():
        on_cpu = branch(padded, lengths)
        raw_cpu = [branch.embed_features(branch.features(c).unsqueeze(0)) for c in clips]
        branch.to("cuda")
        on_cuda = branch(padded.to("cuda"), lengths.to("cuda")).cpu()
        raw_cuda = [branch.embed_features(branch.features(c.to("cuda")).unsqueeze(0)).cpu() for c in clips]
    assert torch.allclose(on_cuda, on_cpu, atol=1e-5)
    for mine, reference in zip(raw_cuda, raw_cpu, strict=True):  # a random network's unit answers lie close
        assert float((mine - reference).norm()) < 1e-4 * float(reference.norm())
