"""Configuration of the L-adapters and of the plain weighted layer sum used without them."""

from __future__ import annotations

from dataclasses import dataclass

from elp.errors import ConfigError
from elp.tuners.e_adapter.config import ACTIVATIONS


def default_layer_adapter_dim(hidden_size: int) -> int:
    """Output width scaled from the reference d_L=512 at d=768, rounded to a multiple of 8."""
    return max(8, int(round(hidden_size * 2 / 3 / 8)) * 8)


@dataclass
class LAdapterConfig:
    """``layers`` None = every encoder layer output (1..L); ``include_embeddings`` adds layer 0."""

    layers: list[int] | None = None
    dim: int | None = None
    activation: str = "gelu"
    include_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"L-adapter activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.dim is not None and self.dim <= 0:
            raise ConfigError("L-adapter dim must be positive")

    def resolve(self, hidden_size: int, num_layers: int) -> LAdapterConfig:
        first = 0 if self.include_embeddings else 1
        layers = list(range(first, num_layers + 1)) if self.layers is None else sorted(set(self.layers))
        bad = [i for i in layers if not 0 <= i <= num_layers]
        if bad or not layers:
            raise ConfigError(f"L-adapter layers {bad or layers} outside 0..{num_layers}")
        return LAdapterConfig(
            layers=layers,
            dim=self.dim or default_layer_adapter_dim(hidden_size),
            activation=self.activation,
            include_embeddings=self.include_embeddings,
        )
