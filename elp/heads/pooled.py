"""Pooled heads: speaker embedding (verification) and utterance classifier (emotion, intent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from elp.heads.config import HeadConfig


def masked_pool(features: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean (or mean+std) over the valid frames only, so padding never changes a row's result."""
    steps = torch.arange(features.shape[1], device=features.device)
    mask = (steps[None, :] < lengths[:, None]).to(features.dtype).unsqueeze(-1)
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


class ClassifierHead(_PooledHead):
    """Projection, pooling, linear -> class logits."""

    def __init__(self, input_dim: int, num_classes: int, config: HeadConfig) -> None:
        super().__init__(input_dim, num_classes, config)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output(self.pooled(features, lengths)).float()
