"""int8 weights for the frozen encoder on CPUs: the served backbone's Linear layers quantised.

Why this path: on x86 CPUs PyTorch's dynamic int8 Linear (fbgemm: int8 weights per output channel,
activations quantised per call) ran the Whisper base feed-forward ~3x faster than float32 on this
project's 2-core CI machine, while torchao 0.18's eager int8 configs ran it 1.1-2.6x *slower* (they
need ``torch.compile`` to pay off), and a per-token int8 matmul (``torch._int_mm``) ran slower than
float32. ``torch.ao.quantization`` is marked deprecated in favour of torchao but is still shipped
and tested in torch 2.13; the one call lives here so it can move when torchao's eager CPU kernels
catch up.

Schemes (measured on Whisper base, validation clips: ``python -m benchmarks.int8_diagnosis``):

- ``"int8"``: three changes to plain dynamic int8, each measured to cut the encoder's error.
  (1) 8-bit activations: PyTorch quantises activations to 7 bits (``reduce_range``) because fbgemm's
  pre-VNNI kernels sum pairs of products in saturating int16; on CPUs with VNNI (int32
  accumulation) the full 8 bits halve every Linear's error at the same speed. (2) SmoothQuant-style
  smoothing: fbgemm picks ONE activation scale per call, so an input channel 10-40x larger than
  the rest (Whisper's feed-forward has them) leaves the others a few int8 steps; each Linear's
  input is divided per channel by ``s = max|x|^alpha / max|W[:, j]|^(1 - alpha)`` and its weight
  columns multiplied by ``s`` (exact in float), moving the outliers into the per-channel-quantised
  weights. The division is an explicit elementwise step in front of each Linear, not folded into
  the preceding LayerNorm, because E-adapted sets replace those LayerNorms' outputs with their
  own. (3) The Linears whose error the rest of the encoder amplifies most stay float32. ``max|x|``
  and that list come from an ``elp.backbones.calibration`` file bound to the float fingerprint;
  without one, "int8" runs (1) only (logged).
- ``"int8-plain"``: per-channel dynamic int8 on every eligible Linear, 7-bit activations, no
  smoothing: the first scheme, kept to compare against.

What runs in int8: the transformer layers' Linears (the family's ``int8_linear_names``; WavLM's
attention is first rewritten so its projections are module calls: ``Backbone.prepare_for_int8``)
and, under ``"int8"``, the family's ``int8_front_end_convs``: the wav2vec 2.0-family CNN's
C -> C convolutions as windows x int8 Linear (``Int8Conv1d``; its first 1 -> C layer, the norms,
Whisper's two convolutions, positional tables and LayerNorms stay float32, and so does every
adapter set and head). The backbone's fingerprint is taken
on the float weights before this runs, so adapter sets trained in float32 load unchanged.

Batch dependence: dynamic int8 picks its activation scales from what one call reads, so the model
encodes an int8 backbone row by row (``MultiAdapterModel.encode``): a row's answer is then the one it
gets alone, bit for bit. (Batched, with one scale per call, answers moved with batch-mates.)
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import skip_init

from elp.backbones.base import Backbone
from elp.backbones.calibration import Int8Calibration
from elp.errors import BackboneLoadError

QUANTIZATIONS = ("int8", "int8-plain")
#: SmoothQuant's migration strength: 0.5 splits the range evenly between activations and weights
SMOOTHING_ALPHA = 0.5
log = logging.getLogger(__name__)


@contextmanager
def _quiet_deprecations():
    """torch.ao.quantization's deprecation notices (see the module docstring for why it is used)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\.quantization")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
        yield


def _dynamic_int8(linear: nn.Linear) -> nn.Module:
    """fbgemm dynamic int8 Linear, weights quantised per output channel."""
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # lower error than per-tensor, as fast
    return torch.ao.nn.quantized.dynamic.Linear.from_float(linear)


def smoothing_factors(input_max: torch.Tensor, weight: torch.Tensor, alpha: float = SMOOTHING_ALPHA) -> torch.Tensor:
    """Per input channel ``s``: activations are divided by it, weight columns multiplied by it."""
    weight_max = weight.detach().abs().amax(0).float().clamp_min(1e-5)
    scale = input_max.float().clamp_min(1e-5).pow(alpha) / weight_max.pow(1 - alpha)
    return scale.clamp(1e-2, 1e2)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The words of ``/proc/cpuinfo`` (its ``flags`` among them); empty where it cannot be read."""
    try:
        return set(cpuinfo.read_text().split())
    except OSError:
        return set()


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies int8 into int32 (AVX512-VNNI, AVX-VNNI or AMX); without VNNI fbgemm sums pairs in
    saturating int16, which is why PyTorch quantises activations to 7 bits. fbgemm has no AVX-VNNI kernels, so on
    client CPUs with AVX-VNNI and no AVX-512 it runs those AVX2 ones, full range included: on Whisper base's encoder
    Linears (one clip, fbgemm held to AVX2, forty-first session) 8-bit activations still erred less than 7-bit ones
    (relative error median 0.018 against 0.024; VNNI kernels 0.0135)."""
    return bool(cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_kernel_class(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The x86 vector class the ASR second pass' costs were measured per (``elp.decoding.rescoring.float32_pass_fits``):
    ``"avx512-vnni"`` (AVX-512 with VNNI: Intel Cascade Lake and later, AMD Zen 4), ``"avx512"`` (without VNNI:
    Intel Skylake-SP), ``"avx2"`` (AVX2 without AVX-512: AMD Zen 2 and 3, Intel client cores), else ``"other"`` (ARM,
    older x86, or flags that cannot be read)."""
    flags = cpu_flags(cpuinfo)
    if "avx512f" in flags:
        return "avx512-vnni" if "avx512_vnni" in flags else "avx512"
    return "avx2" if "avx2" in flags else "other"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): oneDNN's bf16 matmuls then read half
    the bytes of float32 at up to twice its throughput; elsewhere they are emulated and slower than float32."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


class SmoothedInt8Linear(nn.Module):
    """``Linear(x)`` computed as ``int8Linear(x / s)`` with the weight's columns scaled by ``s``
    (``scale=None``: no smoothing), activations quantised to 8 bits where ``full_range`` (VNNI CPUs)
    rather than the 7 of PyTorch's default: half the rounding error (measured) at the same speed."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor | None, full_range: bool) -> None:
        super().__init__()
        # no random init: every value is copied in below (0.25 s of a decoder set's first call otherwise)
        scaled = skip_init(nn.Linear, linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            scaled.weight.copy_(linear.weight.float() * (scale[None, :] if scale is not None else 1.0))
            if linear.bias is not None:
                scaled.bias.copy_(linear.bias.float())
        self.register_buffer("inverse_scale", None if scale is None else (1.0 / scale).float())
        self.reduce_range = not full_range
        self.quantized = _dynamic_int8(scaled)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.inverse_scale is not None:
            inputs = inputs * self.inverse_scale
        packed = self.quantized._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(inputs, packed, reduce_range=self.reduce_range)


class RowwiseInt8Linear(nn.Module):
    """An int8 ``Linear`` (per-channel weights, see ``SmoothedInt8Linear``) that quantises each batch row
    in a call of its own: dynamic int8 picks one activation scale per call, so a row's output is then
    bit for bit the one it gets alone, whatever its batch-mates. For layers that read few rows per call
    (a decoder's token steps), where the int8 weights, 4x fewer bytes, are what makes them faster."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, full_range: bool,
                 input_max: torch.Tensor | None = None) -> None:
        super().__init__()
        linear = skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight.detach().float())
            if bias is not None:
                linear.bias.copy_(bias.detach().float())
        scale = None if input_max is None else smoothing_factors(input_max, linear.weight)
        with _quiet_deprecations():
            self.linear = SmoothedInt8Linear(linear, scale, full_range)

    @classmethod
    def from_linear(cls, linear: nn.Linear, full_range: bool, input_max: torch.Tensor | None = None
                    ) -> RowwiseInt8Linear:
        return cls(linear.weight, linear.bias, full_range, input_max)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.linear(inputs[row:row + 1]) for row in range(inputs.shape[0])])


class Int8Conv1d(nn.Module):
    """A padding-free, ungrouped ``Conv1d`` (B, C, T) -> (B, O, T') as int8 Linear over its windows.

    The weight is laid out (out, tap, channel), so on a time-major (B, T, C) input every window is one
    contiguous run of ``kernel * C`` values: the window matrix is a strided view, and the output,
    returned as a (B, O, T') view of a time-major tensor, feeds the next such layer with no transpose
    copy. Each batch row is quantised alone (``forward``), and ``forward_rows`` reads only a row's
    first ``lengths`` frames: a row's answer never depends on its batch-mates or its padding."""

    def __init__(self, conv: nn.Conv1d, full_range: bool) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding not in ((0,), 0) or conv.dilation != (1,):
            raise ValueError("Int8Conv1d takes ungrouped, padding-free, undilated convolutions")
        self.kernel_size, self.stride = conv.kernel_size, conv.stride  # as a Conv1d names them
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        windows = skip_init(nn.Linear, conv.in_channels * conv.kernel_size[0], conv.out_channels,
                            bias=conv.bias is not None)
        with torch.no_grad():
            windows.weight.copy_(conv.weight.detach().float().permute(0, 2, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                windows.bias.copy_(conv.bias.float())
        self.linear = SmoothedInt8Linear(windows, None, full_range)

    def output_frames(self, frames: int) -> int:
        return max((frames - self.kernel_size[0]) // self.stride[0] + 1, 0)

    def _row(self, time_major: torch.Tensor) -> torch.Tensor:
        """One row's (T, C) frames -> (T', O)."""
        count, channels = self.output_frames(time_major.shape[0]), time_major.shape[1]
        if count == 0:
            return time_major.new_zeros(0, self.out_channels)
        windows = time_major.as_strided((count, self.kernel_size[0] * channels), (self.stride[0] * channels, 1))
        return self.linear(windows)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        time_major = hidden.transpose(1, 2).contiguous()  # free when the previous layer was an Int8Conv1d
        return torch.stack([self._row(row) for row in time_major]).transpose(1, 2)

    def forward_rows(self, hidden: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """``forward`` of each row's first ``lengths[row]`` frames; zeros past its output length."""
        time_major = hidden.transpose(1, 2).contiguous()
        output = time_major.new_zeros(len(lengths), self.output_frames(hidden.shape[-1]), self.out_channels)
        for row, length in enumerate(lengths):
            output[row, : self.output_frames(length)] = self._row(time_major[row, :length])
        return output.transpose(1, 2)


def int8_kernels_work(full_range: bool | None = None) -> str | None:
    """None if this torch build runs ``SmoothedInt8Linear`` (quantised kernels and the packed-weight
    attribute it reads), else why not: ``ELP_DTYPE=auto`` then stays float32 instead of failing."""
    try:
        with _quiet_deprecations():
            full_range = cpu_has_vnni() if full_range is None else full_range
            linear = SmoothedInt8Linear(nn.Linear(8, 4), torch.ones(8), full_range)
            linear(torch.randn(2, 3, 8))
    except Exception as exc:  # any failure means: not here
        return f"{type(exc).__name__}: {exc}"
    return None


def _replace(layer: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(layer.get_submodule(parent_name) if parent_name else layer, child, module)


def quantize_backbone(backbone: Backbone, scheme: str, calibration: Int8Calibration | None = None,
                      alpha: float = SMOOTHING_ALPHA, full_range: bool | None = None) -> Backbone:
    """Quantise ``backbone``'s encoder Linears in place (CPU only) and record the scheme on it.

    ``calibration`` (scheme ``"int8"``): per-Linear input maxima and the Linears kept float; a Linear
    without maxima in it runs unsmoothed. ``full_range``: 8-bit activations (default: on VNNI CPUs)."""
    if scheme not in QUANTIZATIONS:
        raise BackboneLoadError(f"unknown quantisation {scheme!r}; known: {QUANTIZATIONS}")
    if backbone.device.type != "cpu":
        raise BackboneLoadError("int8 backbone quantisation runs on CPUs only; on a GPU use float16 or bfloat16")
    if torch.backends.quantized.engine not in ("fbgemm", "x86", "qnnpack", "onednn"):
        raise BackboneLoadError(f"no int8 kernels on this CPU (quantized engine {torch.backends.quantized.engine!r})")
    if scheme == "int8" and calibration is None:
        log.warning("no int8 calibration for backbone %s: no smoothing, every Linear in int8 (larger "
                    "error; see elp.backbones.calibration)", backbone.identity.fingerprint)
    smooth = calibration if scheme == "int8" else None
    full_range = cpu_has_vnni() if full_range is None else full_range
    backbone.prepare_for_int8()
    with _quiet_deprecations():
        for index, layer in enumerate(backbone.encoder_layers()):
            for name in sorted(backbone.int8_linear_names(layer)):
                label, linear = f"{index}.{name}", layer.get_submodule(name)
                if smooth is not None and label in smooth.keep_float:
                    continue
                if scheme == "int8-plain":
                    module = _dynamic_int8(linear)
                else:
                    maxima = smooth.maxima.get(label) if smooth is not None else None
                    scale = None if maxima is None else smoothing_factors(maxima, linear.weight, alpha)
                    module = SmoothedInt8Linear(linear, scale, full_range)
                _replace(layer, name, module)
        if scheme == "int8":
            for name, conv in backbone.int8_front_end_convs().items():
                _replace(backbone.model, name, Int8Conv1d(conv, full_range))
    backbone.quantization = scheme
    backbone.int8_calibration = smooth.source if smooth is not None else None
    log.info("int8 backbone: scheme %s, %d-bit activations, %d encoder Linears in int8 (%d kept float), "
             "%d front-end convolutions in int8, calibration %s", scheme, 8 if full_range and scheme == "int8" else 7,
             quantized_linear_count(backbone), len(smooth.keep_float) if smooth is not None else 0,
             quantized_conv_count(backbone), backbone.int8_calibration or "none")
    return backbone


def quantized_linear_count(backbone: Backbone) -> int:
    """How many encoder Linear layers run in int8 (0 for a float backbone)."""
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    return sum(isinstance(module, dynamic) for layer in backbone.encoder_layers() for module in layer.modules())


def quantized_conv_count(backbone: Backbone) -> int:
    """How many front-end convolutions run in int8 (``Int8Conv1d``)."""
    return sum(isinstance(module, Int8Conv1d) for module in backbone.model.modules())
