"""Training-only losses that hold parameters not stored in the served adapter set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax over training speakers (Wang et al. 2018): cosine logits with margin m
    on the target class, scaled by s. Only the embedding head is served; these class weights are not."""

    def __init__(self, embedding_dim: int, num_speakers: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_speakers, embedding_dim) * 0.01)
        self.margin = margin
        self.scale = scale

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, dim=-1) @ F.normalize(self.weight, dim=-1).t()

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cosine = self.logits(embeddings)
        margin = F.one_hot(targets, cosine.shape[-1]).to(cosine.dtype) * self.margin
        return F.cross_entropy(self.scale * (cosine - margin), targets)
