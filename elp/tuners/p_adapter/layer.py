"""P-adapter module: produces the K pseudo frames for one adapter set."""

from __future__ import annotations

import torch
from torch import nn

from elp.tuners.p_adapter.config import PAdapterConfig


class PAdapter(nn.Module):
    """Linear form: the frames are the parameters. Nonlinear: frames = MLP(E), which trains more
    stably (prefix tuning's re-parameterisation); both yield a (K, d) tensor."""

    def __init__(self, config: PAdapterConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Parameter(torch.randn(config.num_frames, hidden_size) * 0.02)
        self.mlp: nn.Module | None = None
        if config.form == "nonlinear":
            assert config.hidden is not None, "resolve() the config first"
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, config.hidden), nn.Tanh(), nn.Linear(config.hidden, hidden_size)
            )

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    @property
    def is_prefix(self) -> bool:
        return self.config.position == "prefix"

    def forward(self) -> torch.Tensor:
        return self.embeddings if self.mlp is None else self.mlp(self.embeddings)
