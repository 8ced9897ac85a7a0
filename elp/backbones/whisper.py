"""The Whisper encoder: log-mel front end, two convolutions, sinusoidal positions, pre-LN layers.

Whisper's own ``WhisperEncoder.forward`` insists on 30 s (3000 mel frames) of input. Here the
library's modules are called directly and the positional table is sliced to the clip's length, so a
4 s clip costs 4 s of compute; frames past a row's length are zeroed between the convolutions so
padding never leaks into a row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from elp.backbones.base import Backbone, BackboneIdentity, lengths_to_mask
from elp.backbones.front_end import batched_log_mel

HOP_LENGTH = 160
N_FFT = 400


class WhisperEncoderBackbone(Backbone):
    """Drives ``WhisperEncoder`` (from a ``WhisperModel`` checkpoint) step by step."""

    layer_norm_names = ("self_attn_layer_norm", "final_layer_norm")

    def __init__(self, encoder: nn.Module, identity: BackboneIdentity, mel_filters: torch.Tensor) -> None:
        super().__init__(encoder, identity)
        self.config = encoder.config
        self.register_buffer("mel_filters", mel_filters.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.max_frames = int(encoder.embed_positions.weight.shape[0])

    def encoder_layers(self) -> list[nn.Module]:
        return list(self.model.layers)

    @property
    def max_samples(self) -> int:
        return self.max_frames * 2 * HOP_LENGTH

    def ffn_output_module(self, layer: nn.Module) -> nn.Module:
        return layer.fc2

    def front_end_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        mel_frames = lengths // HOP_LENGTH
        return ((mel_frames - 1) // 2 + 1).long()

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of one clip (80, N // 160), normalised over that clip alone."""
        # Zeros after the clip, as in Whisper's own 30 s zero-padded input, so the last frames match.
        padded = F.pad(waveform.float(), (0, N_FFT // 2))
        stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=self.window.float(), return_complex=True)
        power = stft[..., : waveform.shape[-1] // HOP_LENGTH].abs() ** 2
        mel = self.mel_filters.float().t() @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    def log_mels(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every row's log-mel, (B, 80, max(lengths) // 160), zero past each row's frames: one
        batched STFT or one ``log_mel`` per row (``front_end_mode``), equal within float rounding."""
        if self.batches_front_end():
            return batched_log_mel(waveforms, lengths, self.mel_filters, self.window, N_FFT, HOP_LENGTH)
        max_mel = int(lengths.max()) // HOP_LENGTH
        mels = waveforms.new_zeros(waveforms.shape[0], self.mel_filters.shape[1], max_mel, dtype=torch.float32)
        for row, length in enumerate(lengths.tolist()):
            mel = self.log_mel(waveforms[row, :length])
            mels[row, :, : mel.shape[-1]] = mel
        return mels

    def front_end(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel_lengths = (lengths // HOP_LENGTH).long()
        mels = self.log_mels(waveforms, lengths).to(self.dtype)
        max_mel = mels.shape[-1]
        mel_valid = lengths_to_mask(mel_lengths, max_mel).unsqueeze(1).to(self.dtype)
        hidden = F.gelu(self.model.conv1(mels)) * mel_valid
        hidden = F.gelu(self.model.conv2(hidden)).transpose(1, 2)
        frame_lengths = self.front_end_lengths(lengths)
        if hidden.shape[1] > self.max_frames:
            raise ValueError(f"clip longer than Whisper's {self.max_frames * 2 * HOP_LENGTH / 16000:.0f} s window")
        hidden = hidden + self.model.embed_positions.weight[: hidden.shape[1]].to(hidden.dtype)
        valid = lengths_to_mask(frame_lengths, hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
        return hidden * valid, frame_lengths

    def before_layers(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return frames

    def attention_state(self, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, Any]:
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=frames, attention_mask=valid)
        return {"attention_mask": mask}

    def run_layer(self, index: int, layer: nn.Module, hidden: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        output = layer(hidden, state["attention_mask"])
        return output[0] if isinstance(output, tuple) else output

    def after_layers(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return self.model.layer_norm(last_hidden)
