"""Batched front ends: one tensor program for a whole padded batch instead of a Python loop per row.

Each function here gives every row what the per-row path gives it alone (the reference the tests
compare against, within float tolerance): padding never reaches a row's real frames. On a GPU one
batched call is a handful of kernel launches where the loop pays ~10 per row; on a CPU the loop can
win because a batch computes the padding too (see ``elp.backbones.base.FRONT_END_MODES`` and benchmarks/frontend.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from elp.backbones.base import lengths_to_mask
from elp.backbones.quantize import Int8Conv1d


def zero_padding(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The batch cut to its longest row, samples past each row's length set to zero (the per-row
    path slices rows, so whatever a caller left in the padding must not count)."""
    width = int(lengths.max())
    return torch.where(lengths_to_mask(lengths, width), waveforms[:, :width], waveforms.new_zeros(()))


def batched_log_mel(
    waveforms: torch.Tensor, lengths: torch.Tensor, mel_filters: torch.Tensor, window: torch.Tensor,
    n_fft: int, hop_length: int,
) -> torch.Tensor:
    """Whisper's log-mel of every row at once: (B, n_mels, max(lengths) // hop), each row normalised
    over its own frames and zero past them, as the per-row ``log_mel`` computes it.

    Frame t reads samples [t*hop - n_fft/2, t*hop + n_fft/2); a row's last kept frame reads at most
    n_fft/2 - hop samples past its end, which are zeros in both paths, and never the right-hand
    reflection, so one STFT over the zero-padded batch equals each row's own."""
    mel_lengths = (lengths // hop_length).long()
    max_mel = int(mel_lengths.max())
    samples = F.pad(zero_padding(waveforms.float(), lengths), (0, n_fft // 2))
    stft = torch.stft(samples, n_fft, hop_length, window=window.float(), return_complex=True)
    power = stft[..., :max_mel].abs() ** 2  # (B, n_freq, T)
    log_spec = torch.clamp(mel_filters.float().t() @ power, min=1e-10).log10()  # (B, n_mels, T)
    valid = lengths_to_mask(mel_lengths, max_mel).unsqueeze(1)
    row_max = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, row_max - 8.0)
    return torch.where(valid, (log_spec + 4.0) / 4.0, log_spec.new_zeros(()))


def masked_group_norm(hidden: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (a GroupNorm over channels x time) with each row's statistics taken over its first
    ``lengths[row]`` frames only: what the layer computes on the row alone. Frames past a row's
    length come out finite but meaningless (later layers only read them into padding frames).

    Sums over valid frames are matrix-vector products with the mask (one read, no masked copy) and
    the affine output is one fused multiply-add: ~8 passes over the tensor where the plain masked
    formulation took ~16 (it is memory-bound: B x 512 channels x 3200 frames per second of audio)."""
    batch, channels, frames = hidden.shape
    groups, width = norm.num_groups, channels // norm.num_groups
    values = hidden.float()
    valid = lengths_to_mask(lengths.to(hidden.device), frames).to(values.dtype).unsqueeze(-1)
    count = (lengths.clamp(min=1) * width).to(values.dtype).view(batch, 1, 1)

    def group_mean(tensor: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> each channel's group mean (B, C, 1)
        sums = torch.bmm(tensor, valid).view(batch, groups, width).sum(dim=2, keepdim=True) / count
        return sums.expand(batch, groups, width).reshape(batch, channels, 1)

    centred = values - group_mean(values)
    scale = torch.rsqrt(group_mean(centred.square()) + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.float().view(1, channels, 1)
        return torch.addcmul(norm.bias.float().view(1, channels, 1), centred, scale).to(hidden.dtype)
    return (centred * scale).to(hidden.dtype)


def conv_output_lengths(lengths: torch.Tensor, conv: nn.Conv1d | Int8Conv1d) -> torch.Tensor:
    """Frames a padding-free ``conv`` yields for inputs of ``lengths`` frames."""
    kernel, stride = int(conv.kernel_size[0]), int(conv.stride[0])
    return torch.div(lengths - kernel, stride, rounding_mode="floor") + 1


def batched_group_norm_cnn(feature_encoder: nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The wav2vec 2.0-family CNN feature encoder ("group" norm: a GroupNorm over time after the first
    convolution, none after the others) on a padded batch: (B, C, T) features whose first
    ``_get_feat_extract_output_lengths(lengths)`` frames per row equal the row run alone.

    Only the first layer's statistics see time, so they are masked to each row's frames; a valid
    output frame of a padding-free convolution reads valid input frames only, so the later layers run
    on the padded batch as they are."""
    if bool(lengths.min() == lengths.max()):  # no padding: the library's own call is exact and fastest
        return feature_encoder(waveforms[:, : int(lengths.max())])
    first, *rest = feature_encoder.conv_layers
    hidden = first.conv(zero_padding(waveforms, lengths)[:, None])
    frames = conv_output_lengths(lengths, first.conv)
    return later_conv_layers(rest, first.activation(masked_group_norm(hidden, frames, first.layer_norm)), frames)


def padded_cnn(feature_encoder: nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The wav2vec 2.0-family CNN ("layer" norm: per-frame LayerNorms, nothing over time) on a padded
    batch, as the library runs it but with int8 convolutions reading each row's own frames only."""
    first, *rest = feature_encoder.conv_layers
    return later_conv_layers(rest, first(waveforms[:, None]), conv_output_lengths(lengths, first.conv))


def later_conv_layers(layers: list[nn.Module], hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """CNN layers after the first on a padded batch whose rows hold ``lengths`` valid frames.

    A float layer runs on the whole batch (a valid output frame of a padding-free convolution reads
    valid input frames only). An int8 one (``Int8Conv1d``) picks its activation scale from what it
    reads, so it reads each row's valid frames alone: padding and batch-mates never reach a row."""
    for layer in layers:
        if isinstance(layer.conv, Int8Conv1d):
            hidden = layer.conv.forward_rows(hidden, lengths.tolist())
            norm = getattr(layer, "layer_norm", None)
            if norm is not None:  # the "layer" variant's LayerNorm over channels, per frame
                hidden = norm(hidden.transpose(-2, -1)).transpose(-2, -1)
            hidden = layer.activation(hidden)
        else:
            hidden = layer(hidden)
        lengths = conv_output_lengths(lengths, layer.conv)
    return hidden
