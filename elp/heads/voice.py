"""A voice branch for speaker embeddings: a small network on the clip's own log-mel spectrum.

Why a speaker head needs it: the shared encoder is trained for content, and its layers keep little of
what tells real people apart. Pooled frozen Whisper layers score 30-46% EER on real-speaker trials,
and adapters trained on synthetic speakers 28.7%. A speaker model trained on thousands of real people
(resemblyzer's GE2E) reads nothing but 40 log-mel bands. This branch reads the same kind of input,
computed from each row's own samples (like the prosody statistics, so padding never changes an
answer). It is trained to reproduce such a teacher's embeddings on any audio
(``training.distill_voice``): distillation needs no speaker labels, only audio.

The network is a dilated 1-D convolution stack (a TDNN, as in x-vectors) with mean + standard
deviation pooling over the row's real frames. It runs on the model's device, one row at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
MEL_BANDS = 40
CONVERTED_KINDS = ("ge2e", "dvector", "campplus")  # published networks, sized by channels, layers, embedding
MIN_FRAMES = 20  # 0.2 s: shorter rows are padded with silence, so every row gets an embedding


@dataclass(frozen=True)
class VoiceBranchConfig:
    """Sizes of the branch (stored in the set's config; the weights follow them)."""

    channels: int = 256
    pooled_channels: int = 768
    embedding_dim: int = 256
    dilations: tuple[int, ...] = (2, 3, 4)

    def to_dict(self) -> dict:
        return {"kind": "tdnn", "channels": self.channels, "pooled_channels": self.pooled_channels,
                "embedding_dim": self.embedding_dim, "dilations": list(self.dilations)}

    @classmethod
    def from_dict(cls, data: dict) -> VoiceBranchConfig:
        return cls(int(data["channels"]), int(data["pooled_channels"]), int(data["embedding_dim"]),
                   tuple(int(d) for d in data["dilations"]))


@dataclass(frozen=True)
class ConvertedNetworkConfig:
    """Sizes of a converted published network (one of ``CONVERTED_KINDS``), stored in the set's config: its
    width, layers and embedding size; ``kind``, a class attribute of each subclass, names the network."""

    hidden: int
    layers: int
    embedding_dim: int
    kind = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "hidden": self.hidden, "layers": self.layers, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(int(data["hidden"]), int(data["layers"]), int(data["embedding_dim"]))


def mel_filterbank(bands: int = MEL_BANDS, n_fft: int = WINDOW, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(bands, n_fft // 2 + 1) triangular filters, evenly spaced on the HTK mel scale, 0 Hz to Nyquist."""

    def mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    edges_mel = torch.linspace(0.0, float(mel(torch.tensor(sample_rate / 2))), bands + 2, dtype=torch.float64)
    edges_hz = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    bins = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMel(nn.Module):
    """Log mel energies of one mono clip, minus their mean over the clip (removes gain and a fixed
    channel colouring, which say nothing about the speaker)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", mel_filterbank(), persistent=False)
        self.register_buffer("window", torch.hann_window(WINDOW), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (MEL_BANDS, frames)."""
        wave = wave.float()
        needed = (MIN_FRAMES - 1) * HOP + WINDOW
        if wave.numel() < needed:
            wave = F.pad(wave, (0, needed - wave.numel()))
        # float32 whatever the model's dtype (a bfloat16 filterbank would round the energies)
        spectrum = torch.stft(wave, WINDOW, HOP, WINDOW, self.window.float(), center=False, return_complex=True)
        energies = torch.log(self.filters.float() @ spectrum.abs().pow(2) + 1e-6)
        return energies - energies.mean(dim=1, keepdim=True)


class _Block(nn.Module):
    """Dilated convolution, ReLU, LayerNorm over channels, with a residual connection."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(F.relu(self.conv(x)).transpose(1, 2)).transpose(1, 2)


class VoiceBranch(nn.Module):
    """Waveform -> unit speaker embedding (``config.embedding_dim``)."""

    def __init__(self, config: VoiceBranchConfig | None = None) -> None:
        super().__init__()
        self.config = config or VoiceBranchConfig()
        c = self.config
        self.log_mel = LogMel()
        self.stem = nn.Sequential(nn.Conv1d(MEL_BANDS, c.channels, 5, padding=2), nn.ReLU())
        self.stem_norm = nn.LayerNorm(c.channels)
        self.blocks = nn.ModuleList(_Block(c.channels, d) for d in c.dilations)
        self.expand = nn.Sequential(nn.Conv1d(c.channels, c.pooled_channels, 1), nn.ReLU())
        self.output = nn.Linear(2 * c.pooled_channels, c.embedding_dim)

    def frames(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, MEL_BANDS, frames) of equal-length rows -> pooled (batch, 2 * pooled_channels)."""
        x = self.stem(mel)
        x = self.stem_norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.expand(x)
        return torch.cat([x.mean(dim=2), x.std(dim=2, unbiased=False)], dim=1)

    def embed_mels(self, mel: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of a batch of equal-length log-mel crops (training reads these)."""
        return F.normalize(self.output(self.frames(mel)), dim=-1)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, samples) padded rows and their real lengths -> (batch, embedding_dim), row by row so
        that a row's answer never depends on its batch-mates' lengths."""
        dtype = self.output.weight.dtype
        mels = [self.log_mel(wave[: int(length)]) for wave, length in zip(waves, lengths, strict=True)]
        return torch.cat([self.embed_mels(mel.unsqueeze(0).to(dtype)) for mel in mels])


def build_voice_branch(kind: str, channels: int, pooled_channels: int, embedding_dim: int, layers: int) -> nn.Module:
    """The branch a head config names (``HeadConfig.voice_kind``); all take ``(waves, lengths)``."""
    if kind == "ge2e":
        from elp.heads.ge2e import Ge2eBranch, Ge2eConfig

        return Ge2eBranch(Ge2eConfig(channels, layers, embedding_dim))
    if kind == "dvector":
        from elp.heads.dvector import DvectorBranch, DvectorConfig

        return DvectorBranch(DvectorConfig(channels, layers, embedding_dim))
    if kind == "campplus":
        from elp.heads.campplus import CamppBranch, CamppConfig

        return CamppBranch(CamppConfig(channels, layers, embedding_dim))
    return VoiceBranch(VoiceBranchConfig(channels, pooled_channels, embedding_dim))


def branch_from_record(config: dict) -> nn.Module:
    """An untrained branch shaped as a branch folder's ``voice_branch.json`` ``config`` says."""
    kind = config.get("kind", "tdnn")
    if kind in CONVERTED_KINDS:
        return build_voice_branch(kind, int(config["hidden"]), 0, int(config["embedding_dim"]), int(config["layers"]))
    return VoiceBranch(VoiceBranchConfig.from_dict(config))


def head_fields(config: dict) -> dict:
    """The ``HeadConfig`` voice fields that rebuild a branch folder's branch inside a set."""
    if config.get("kind", "tdnn") in CONVERTED_KINDS:
        return {"voice_kind": config["kind"], "voice_channels": int(config["hidden"]),
                "voice_layers": int(config["layers"]), "voice_embedding_dim": int(config["embedding_dim"])}
    return {"voice_kind": "tdnn", "voice_channels": int(config["channels"]),
            "voice_pooled_channels": int(config["pooled_channels"]),
            "voice_embedding_dim": int(config["embedding_dim"])}
