"""Pooled heads: speaker embedding (verification) and utterance classifier (emotion, intent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from elp.errors import ConfigError
from elp.heads.config import HeadConfig


def masked_pool(features: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean, mean+std or max over the valid frames only, so padding never changes a row's result."""
    steps = torch.arange(features.shape[1], device=features.device)
    mask = (steps[None, :] < lengths[:, None]).to(features.dtype).unsqueeze(-1)
    if pooling == "max":
        return features.masked_fill(mask == 0, torch.finfo(features.dtype).min).amax(dim=1)
    count = mask.sum(dim=1).clamp(min=1.0)
    mean = (features * mask).sum(dim=1) / count
    if pooling == "mean":
        return mean
    var = (((features - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / count
    return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class _PooledHead(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, config: HeadConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.projection = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(input_dim, config.hidden_dim), nn.ReLU()
        )
        pooled_dim = config.hidden_dim * (2 if config.pooling == "stats" else 1)
        self.output = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(pooled_dim, output_dim))

    def pooled(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return masked_pool(self.projection(features), lengths, self.pooling)


class SpeakerEmbeddingHead(_PooledHead):
    """Projection, pooling, linear -> L2-normalised speaker embedding (scored by cosine)."""

    def __init__(self, input_dim: int, config: HeadConfig) -> None:
        super().__init__(input_dim, config.embedding_dim, config)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output(self.pooled(features, lengths)).float(), dim=-1)


def slot_incidence(labels: list[str], slot_names: list[str]) -> torch.Tensor:
    """(intents x slot values) 0/1 matrix: which value of each slot an intent label is made of."""
    values = [sorted({label.split("_")[i] for label in labels}) for i in range(len(slot_names))]
    offsets = [sum(len(v) for v in values[:i]) for i in range(len(values))]
    incidence = torch.zeros(len(labels), sum(len(v) for v in values))
    for row, label in enumerate(labels):
        for slot, value in enumerate(label.split("_")):
            incidence[row, offsets[slot] + values[slot].index(value)] = 1.0
    return incidence


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

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.output(self.pooled(features, lengths)).float()
        if self.slot_incidence is not None:
            logits = logits @ self.slot_incidence.t().to(logits.dtype)  # the buffer follows the model dtype
        return logits
