"""Shared set-up of the GPU tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 would round matmuls and convolutions to 10 mantissa bits; compare the real float32 path."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
