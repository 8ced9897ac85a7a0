"""A GE2E speaker encoder as a voice branch: a 3-layer LSTM on 40 mel bands (Wan et al., 2018).

Why a set may carry one: a branch *distilled* from a real-speaker teacher on the few real voices that
can be had offline learns the teacher's geometry only near those voices (EER 24% on people it never
heard, against the teacher's 9%). A GE2E network trained on thousands of real speakers, such as the
one published with resemblyzer (Apache-2.0; ``elp.convert.ge2e_branch`` turns its checkpoint into
safetensors), carries that knowledge itself. The set still scores ``(1 - v) cos_encoder + v cos_ge2e``:
the shared encoder's adapters and the branch make different mistakes.

The front end follows the network's training recipe so that the published weights see the input they
learnt from: level raised to -30 dBFS (never lowered), a power mel spectrogram (Slaney mel scale,
25 ms Hann window, 10 ms hop, centred frames, not logged), 1.6 s partial windows every ~0.77 s, the
unit mean of the windows' unit embeddings. resemblyzer also trims long pauses with a voice detector;
this branch does not (no extra dependency in the server, and a row's answer stays a pure function of
its samples): ``training.voice_fusion`` measures the branch as served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elp.heads.voice import ConvertedNetworkConfig

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
MEL_BANDS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75  # the last window is kept if the clip fills at least this share of it
TARGET_DBFS = -30.0


@dataclass(frozen=True)
class Ge2eConfig(ConvertedNetworkConfig):
    """Sizes of the LSTM (stored in the set's config; the weights follow them). ``kind`` names the network
    (a subclass per published encoder of this shape)."""

    hidden: int = 256
    layers: int = 3
    embedding_dim: int = 256
    kind = "ge2e"


def slaney_mel_filterbank(bands: int = MEL_BANDS, n_fft: int = WINDOW, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(bands, n_fft // 2 + 1) area-normalised triangles on the Slaney mel scale (linear below 1 kHz,
    logarithmic above), 0 Hz to Nyquist: the filters the published GE2E weights were trained with."""
    linear_step, log_start_hz = 200.0 / 3, 1000.0
    log_start_mel, log_step = log_start_hz / linear_step, math.log(6.4) / 27.0

    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return torch.where(hz >= log_start_hz, log_start_mel + torch.log(hz.clamp(min=1e-10) / log_start_hz) / log_step,
                           hz / linear_step)

    def to_hz(mel: torch.Tensor) -> torch.Tensor:
        return torch.where(mel >= log_start_mel, log_start_hz * torch.exp(log_step * (mel - log_start_mel)),
                           mel * linear_step)

    top = to_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))
    edges = to_hz(torch.linspace(0.0, float(top), bands + 2, dtype=torch.float64))
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    widths = edges.diff()
    ramps = edges[:, None] - bins[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).float()


def raise_level(wave: torch.Tensor, target_dbfs: float = TARGET_DBFS) -> torch.Tensor:
    """Scale a quiet clip up to ``target_dbfs`` RMS; a louder (or silent) clip is left as it is."""
    rms = wave.float().pow(2).mean().sqrt()
    if rms <= 0:
        return wave
    gain_db = target_dbfs - 20.0 * torch.log10(rms)
    return wave * torch.pow(10.0, gain_db / 20.0) if gain_db > 0 else wave


def partial_starts(samples: int) -> tuple[list[int], int]:
    """Start frames of the 1.6 s windows covering a clip, and the samples the padded clip must have."""
    frames = math.ceil((samples + 1) / HOP)
    step = round(SAMPLE_RATE / PARTIALS_PER_SECOND / HOP)
    starts = list(range(0, max(1, frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts, (starts[-1] + PARTIAL_FRAMES) * HOP


class Ge2eBranch(nn.Module):
    """Waveform -> unit speaker embedding (``config.embedding_dim``), one row at a time."""

    def __init__(self, config: Ge2eConfig | None = None) -> None:
        super().__init__()
        self.config = config or Ge2eConfig()
        c = self.config
        self.lstm = nn.LSTM(MEL_BANDS, c.hidden, c.layers, batch_first=True)
        self.linear = nn.Linear(c.hidden, c.embedding_dim)
        self.register_buffer("filters", slaney_mel_filterbank(), persistent=False)
        self.register_buffer("window", torch.hann_window(WINDOW), persistent=False)

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (frames, MEL_BANDS) power mel spectrogram, float32 whatever the model's dtype."""
        spectrum = torch.stft(wave.float(), WINDOW, HOP, WINDOW, self.window.float(), center=True,
                              pad_mode="constant", return_complex=True)
        return (self.filters.float() @ spectrum.abs().pow(2)).t()

    def embed_windows(self, mels: torch.Tensor) -> torch.Tensor:
        """(windows, frames, MEL_BANDS) -> (windows, embedding_dim) unit embeddings of each window."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=-1)

    def windows(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) one clip -> (windows, PARTIAL_FRAMES, MEL_BANDS): its 1.6 s mel windows."""
        starts, padded = partial_starts(wave.numel())
        wave = raise_level(wave)
        if padded > wave.numel():
            wave = F.pad(wave, (0, padded - wave.numel()))
        mel = self.mel(wave).to(self.linear.weight.dtype)
        return torch.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, samples) padded rows and their real lengths -> (batch, embedding_dim). Each row's windows
        come from its own samples; every row's windows go through the LSTM in one call (all are 160 frames,
        so no padding), then each row averages its own: a row's answer never depends on its batch-mates."""
        per_row = [self.windows(wave[: int(length)]) for wave, length in zip(waves, lengths, strict=True)]
        embedded = self.embed_windows(torch.cat(per_row)).float()
        counts = [w.shape[0] for w in per_row]
        return torch.stack([F.normalize(part.mean(dim=0), dim=-1) for part in embedded.split(counts)])
