"""int8 weights for the frozen encoder on CPUs: the served backbone's Linear layers quantised.

Why this path: on x86 CPUs PyTorch's dynamic int8 Linear (fbgemm: int8 weights per output channel,
activations quantised per call) ran the Whisper base feed-forward ~3x faster than float32 on this
project's 2-core CI machine, while torchao 0.18's eager int8 configs ran it 1.1-2.6x *slower* (they
need ``torch.compile`` to pay off). ``torch.ao.quantization`` is marked deprecated in favour of
torchao but is still shipped and tested in torch 2.13; the one call lives here so it can move when
torchao's eager CPU kernels catch up.

Only the transformer layers are quantised (attention projections, feed-forward): the convolutional
front end, positional tables and LayerNorms stay float32, and so does every adapter set and head.
The backbone's fingerprint is taken on the float weights before this runs, so adapter sets trained
in float32 load unchanged.

Caveat (measured, documented in docs/server.md): dynamic quantisation picks one activation scale per
call for the whole (batch x frames) matrix, so a row's answer depends slightly on what else is in its
batch. Answers are close to float32, not bit-identical, and mixed batches equal single-set runs only
within a tolerance.
"""

from __future__ import annotations

import warnings

import torch

from elp.backbones.base import Backbone
from elp.errors import BackboneLoadError

QUANTIZATIONS = ("int8",)


def quantize_backbone(backbone: Backbone, scheme: str) -> Backbone:
    """Quantise ``backbone``'s encoder layers in place (CPU only) and record the scheme on it."""
    if scheme not in QUANTIZATIONS:
        raise BackboneLoadError(f"unknown quantisation {scheme!r}; known: {QUANTIZATIONS}")
    if backbone.device.type != "cpu":
        raise BackboneLoadError("int8 backbone quantisation runs on CPUs only; on a GPU use float16 or bfloat16")
    if torch.backends.quantized.engine not in ("fbgemm", "x86", "qnnpack", "onednn"):
        raise BackboneLoadError(f"no int8 kernels on this CPU (quantized engine {torch.backends.quantized.engine!r})")
    with warnings.catch_warnings():
        # the deprecation notice of torch.ao.quantization (see the module docstring for why it is used)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\.quantization")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # lower error than per-tensor, as fast
        for layer in backbone.encoder_layers():
            spec = {name: qconfig for name in backbone.int8_linear_names(layer)}
            torch.ao.quantization.quantize_dynamic(layer, spec, dtype=torch.qint8, inplace=True)
    backbone.quantization = scheme
    return backbone


def quantized_linear_count(backbone: Backbone) -> int:
    """How many encoder Linear layers run in int8 (0 for a float backbone)."""
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    return sum(isinstance(module, dynamic) for layer in backbone.encoder_layers() for module in layer.modules())
