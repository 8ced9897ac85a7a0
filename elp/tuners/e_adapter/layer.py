"""E-adapter modules: ``g_E(X) = LN_E(W2 act(W1 X + b1) + b2) + X``."""

from __future__ import annotations

import torch
from torch import nn

from elp.tuners.e_adapter.config import EAdapterConfig


def make_activation(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU()


class EAdapter(nn.Module):
    """One bottleneck adapter; near identity at initialisation (W ~ N(0, init_std), b = 0)."""

    def __init__(self, hidden_size: int, bottleneck: int, activation: str, init_std: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = make_activation(activation)
        self.up = nn.Linear(bottleneck, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=init_std)
            nn.init.zeros_(linear.bias)
        # LN_E renormalises the tiny bottleneck output to unit scale, which would inject unit-variance
        # noise at step 0; a small initial gain keeps g_E within ~1% of identity until it has learnt.
        nn.init.constant_(self.norm.weight, 0.01)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.up(self.act(self.down(hidden)))) + hidden


class EAdapterStack(nn.Module):
    """The E-adapters of one adapter set, plus its own copies of the adapted layers' LayerNorms.

    ``layer_norms[f"{layer}_{name}"]`` overrides the backbone LayerNorm ``name`` of encoder layer
    ``layer`` for the rows of this set only; the backbone's own LayerNorm stays frozen and shared.
    """

    def __init__(self, config: EAdapterConfig, hidden_size: int, layer_norm_names: list[str]) -> None:
        super().__init__()
        assert config.layers is not None and config.bottleneck is not None, "resolve() the config first"
        self.config = config
        self.adapters = nn.ModuleDict(
            {
                str(i): EAdapter(hidden_size, config.bottleneck, config.activation, config.init_std)
                for i in config.layers
            }
        )
        norms: dict[str, nn.Module] = {}
        if config.train_layer_norms:
            for i in config.layers:
                for name in layer_norm_names:
                    norms[f"{i}_{name}"] = nn.LayerNorm(hidden_size)
        self.layer_norms = nn.ModuleDict(norms)

    def adapter_for(self, layer: int) -> EAdapter | None:
        return self.adapters[str(layer)] if str(layer) in self.adapters else None  # noqa: SIM401 (ModuleDict has no get)

    def layer_norm_for(self, layer: int, name: str) -> nn.LayerNorm | None:
        key = f"{layer}_{name}"
        return self.layer_norms[key] if key in self.layer_norms else None  # type: ignore[return-value]  # noqa: SIM401

    @torch.no_grad()
    def copy_layer_norms_from(self, backbone_norms: dict[str, nn.LayerNorm]) -> None:
        """Start the per-set LayerNorms from the backbone's values so initial outputs are unchanged."""
        for key, norm in self.layer_norms.items():
            source = backbone_norms[key]
            norm.weight.copy_(source.weight)
            norm.bias.copy_(source.bias)
            norm.eps = source.eps
