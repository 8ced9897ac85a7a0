"""Pooled heads: speaker embedding (verification) and utterance classifier (emotion, intent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from elp.backbones.base import lengths_to_mask
from elp.errors import ConfigError
from elp.heads.config import HeadConfig
from elp.heads.prosody import NUM_PROSODY_FEATURES, PROSODY_FEATURES
from elp.heads.voice import build_voice_branch

PITCH_INDEX = PROSODY_FEATURES.index("f0_median_semitones")


def masked_pool(features: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean, mean+std or max over the valid frames only, so padding never changes a row's result."""
    mask = lengths_to_mask(lengths, features.shape[1]).to(features.dtype).unsqueeze(-1)
    if pooling == "max":
        return features.masked_fill(mask == 0, torch.finfo(features.dtype).min).amax(dim=1)
    count = mask.sum(dim=1).clamp(min=1.0)
    mean = (features * mask).sum(dim=1) / count
    if pooling == "mean":
        return mean
    var = (((features - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / count
    return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class RunningStandardizer(nn.Module):
    """Standardises features in dB, semitones and seconds by running mean and variance.

    Unlike batch norm it always uses the running statistics (set from the first training batch, then
    an exponential average), so a batch of one trains fine and training and serving agree; the
    statistics are saved with the weights and applied in float32 whatever the model's dtype (a
    bfloat16 model rounds them to ~3 significant digits: a ~0.1 dB / 0.03 semitone change)."""

    def __init__(self, num_features: int, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        values = values.float()
        if self.training:
            with torch.no_grad():
                mean, var = values.mean(dim=0), values.var(dim=0, unbiased=False)
                if int(self.batches_seen) == 0:
                    self.running_mean.copy_(mean)
                    self.running_var.copy_(var if values.shape[0] > 1 else torch.ones_like(var))
                else:
                    self.running_mean.lerp_(mean, self.momentum)
                    if values.shape[0] > 1:
                        self.running_var.lerp_(var, self.momentum)
                self.batches_seen += 1
        return (values - self.running_mean.float()) / (self.running_var.float() + 1e-5).sqrt()


class _PooledHead(nn.Module):
    reads_waveform = False  # only a speaker head with a voice branch reads its rows' samples

    def __init__(self, input_dim: int, output_dim: int, config: HeadConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.projection = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(input_dim, config.hidden_dim), nn.ReLU()
        )
        pooled_dim = config.hidden_dim * (2 if config.pooling == "stats" else 1)
        self.fuses_prosody = config.prosody
        self.uses_prosody = config.prosody or config.pitch_weight > 0
        if self.uses_prosody:
            self.prosody_norm = RunningStandardizer(NUM_PROSODY_FEATURES)
        if config.prosody:
            self.prosody_projection = nn.Sequential(nn.Linear(NUM_PROSODY_FEATURES, config.prosody_dim), nn.ReLU())
            pooled_dim += config.prosody_dim
        self.output = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(pooled_dim, output_dim))

    def pooled(
        self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None
    ) -> torch.Tensor:
        pooled = masked_pool(self.projection(features), lengths, self.pooling)
        if not self.fuses_prosody:
            return pooled
        normalised = self.prosody_norm(self.checked(prosody)).to(pooled.dtype)
        return torch.cat([pooled, self.prosody_projection(normalised)], dim=-1)

    def checked(self, prosody: torch.Tensor | None) -> torch.Tensor:
        if prosody is None:
            raise ConfigError("this head reads prosody statistics: pass prosody=prosody_features(waveforms, lengths)")
        return prosody


def append_pitch(embeddings: torch.Tensor, pitch_z: torch.Tensor, weight: float, angle: float) -> torch.Tensor:
    """Unit embeddings (b, E) -> unit (b, E + 2) whose cosine is the weighted mean of the voice cosine
    and ``cos(angle * (z_a - z_b))`` of the standardised pitches (see ``HeadConfig.pitch_weight``)."""
    radius = weight**0.5
    circle = torch.stack([torch.cos(angle * pitch_z), torch.sin(angle * pitch_z)], dim=-1) * radius
    return torch.cat([embeddings.float(), circle.float()], dim=-1) / (1.0 + weight) ** 0.5


class SpeakerEmbeddingHead(_PooledHead):
    """Projection, pooling, linear -> L2-normalised speaker embedding (scored by cosine). With
    ``voice_weight`` a voice branch's embedding of the clip's log-mel spectrum is concatenated (each
    part scaled so the cosine is their weighted mean); with ``pitch_weight`` the clip's standardised
    median pitch rides along as two more coordinates. A second voice branch (``second_voice_weight``) adds
    its part the same way."""

    def __init__(self, input_dim: int, config: HeadConfig) -> None:
        super().__init__(input_dim, config.embedding_dim, config)
        self.pitch_weight, self.pitch_angle = config.pitch_weight, config.pitch_angle
        self.voice_weight = config.voice_weight
        self.reads_waveform = config.voice_weight > 0
        if self.reads_waveform:
            self.voice = build_voice_branch(config.voice_kind, config.voice_channels, config.voice_pooled_channels,
                                            config.voice_embedding_dim, config.voice_layers)
        voice_size = config.voice_embedding_dim if self.reads_waveform else 0
        self.second_voice_weight = config.second_voice_weight
        if self.second_voice_weight > 0:
            self.second_voice = build_voice_branch(config.second_voice_kind, config.second_voice_channels, 0,
                                                   config.second_voice_embedding_dim, config.second_voice_layers)
            voice_size += config.second_voice_embedding_dim
        self.centred = config.centred
        if self.centred:  # the cohort mean, written by training.verify_norm centre
            self.register_buffer("centre", torch.zeros(config.embedding_dim + voice_size))
        self.embedding_size = config.embedding_dim + voice_size + (2 if config.pitch_weight > 0 else 0)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None,
        waves: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``waves``: the rows' samples (b, n) and real lengths, read by the voice branch only."""
        embeddings = F.normalize(self.output(self.pooled(features, lengths, prosody)).float(), dim=-1)
        if self.reads_waveform:
            if waves is None:
                raise ConfigError("this head has a voice branch: pass waves=(samples, sample_lengths)")
            encoder_weight = 1 - self.voice_weight - self.second_voice_weight
            parts = [embeddings * max(encoder_weight, 0.0) ** 0.5, self.voice(*waves).float() * self.voice_weight**0.5]
            if self.second_voice_weight > 0:
                parts.append(self.second_voice(*waves).float() * self.second_voice_weight**0.5)
            embeddings = torch.cat(parts, -1)
        if self.centred:
            embeddings = F.normalize(embeddings - self.centre.float(), dim=-1)
        if self.pitch_weight <= 0:
            return embeddings
        pitch_z = self.prosody_norm(self.checked(prosody))[:, PITCH_INDEX]
        return append_pitch(embeddings, pitch_z, self.pitch_weight, self.pitch_angle)


def slot_incidence(labels: list[str], slot_names: list[str]) -> torch.Tensor:
    """(intents x slot values) 0/1 matrix: which value of each slot an intent label is made of."""
    values = [sorted({label.split("_")[i] for label in labels}) for i in range(len(slot_names))]
    offsets = [sum(len(v) for v in values[:i]) for i in range(len(values))]
    incidence = torch.zeros(len(labels), sum(len(v) for v in values))
    for row, label in enumerate(labels):
        for slot, value in enumerate(label.split("_")):
            incidence[row, offsets[slot] + values[slot].index(value)] = 1.0
    return incidence


def label_incidence(labels: list[str], slot_names: list[str] | None) -> torch.Tensor:
    """:func:`slot_incidence` for slot-factorised labels; without slot names each label is its own value
    (the identity), so a classifier over free-form intents shares the same code."""
    return slot_incidence(labels, slot_names) if slot_names else torch.eye(len(labels))


class ClassifierHead(_PooledHead):
    """Projection, pooling, linear -> class logits; with ``factorized_slots`` the linear scores slot
    values and an intent's logit is the sum of its values' scores."""

    def __init__(
        self, input_dim: int, num_classes: int, config: HeadConfig,
        labels: list[str] | None = None, slot_names: list[str] | None = None,
    ) -> None:
        incidence = None
        if config.factorized_slots:
            if not labels or not slot_names:
                raise ConfigError("factorized_slots needs intent labels and slot names")
            incidence = slot_incidence(labels, slot_names)
        super().__init__(input_dim, num_classes if incidence is None else incidence.shape[1], config)
        # Derived from the config's labels, so not stored with the weights.
        self.register_buffer("slot_incidence", incidence, persistent=False)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, prosody: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = self.output(self.pooled(features, lengths, prosody)).float()
        if self.slot_incidence is not None:
            logits = logits @ self.slot_incidence.t().to(logits.dtype)  # the buffer follows the model dtype
        return logits
