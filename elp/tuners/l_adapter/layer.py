"""L-adapter stack and the s3prl-style weighted layer sum (the "none" baseline's featurizer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from elp.tuners.e_adapter.layer import make_activation
from elp.tuners.l_adapter.config import LAdapterConfig


class LAdapterStack(nn.Module):
    """``H = sum_l softmax(w)_l LN_l(act(W_l X_l + b_l))`` over the configured layer outputs."""

    def __init__(self, config: LAdapterConfig, hidden_size: int) -> None:
        super().__init__()
        assert config.layers is not None and config.dim is not None, "resolve() the config first"
        self.config = config
        self.layer_ids = list(config.layers)
        self.projections = nn.ModuleList(nn.Linear(hidden_size, config.dim) for _ in self.layer_ids)
        self.norms = nn.ModuleList(nn.LayerNorm(config.dim) for _ in self.layer_ids)
        self.act = make_activation(config.activation)
        self.layer_weights = nn.Parameter(torch.zeros(len(self.layer_ids)))
        self.output_dim = config.dim

    def forward(self, hidden_states: list[torch.Tensor]) -> torch.Tensor:
        """``hidden_states[l]`` is layer l's output (index 0 = embeddings), each (B, T, d)."""
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = None
        for k, layer in enumerate(self.layer_ids):
            adapted = self.norms[k](self.act(self.projections[k](hidden_states[layer])))
            term = weights[k] * adapted
            mixed = term if mixed is None else mixed + term
        assert mixed is not None
        return mixed


class WeightedLayerSum(nn.Module):
    """s3prl's featurizer: softmax-weighted sum of (optionally normalised) layer outputs.

    Normalising each layer first matters for pre-LN encoders such as Whisper, whose residual
    stream grows by orders of magnitude with depth.
    """

    def __init__(self, layer_ids: list[int], hidden_size: int, normalize: bool = True) -> None:
        super().__init__()
        self.layer_ids = list(layer_ids)
        self.normalize = normalize
        self.layer_weights = nn.Parameter(torch.zeros(len(self.layer_ids)))
        self.output_dim = hidden_size

    def forward(self, hidden_states: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=0)
        mixed = None
        for k, layer in enumerate(self.layer_ids):
            state = hidden_states[layer]
            if self.normalize:
                state = F.layer_norm(state, state.shape[-1:])
            term = weights[k] * state
            mixed = term if mixed is None else mixed + term
        assert mixed is not None
        return mixed
