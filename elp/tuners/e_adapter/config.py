"""Configuration of the E-adapters (ELP.md, "E-adapters")."""

from __future__ import annotations

from dataclasses import dataclass

from elp.errors import ConfigError

ACTIVATIONS = ("gelu", "relu")


def default_bottleneck(hidden_size: int) -> int:
    """Bottleneck width scaled from the reference r=256 at d=768, rounded to a multiple of 8."""
    return max(8, int(round(hidden_size / 3 / 8)) * 8)


@dataclass
class EAdapterConfig:
    """Which layers get an E-adapter and how wide it is.

    ``layers`` None means "all but the last", the reference code's choice. ``train_layer_norms``
    stores per-set copies of the adapted layers' LayerNorms, as the paper trains them.
    """

    layers: list[int] | None = None
    bottleneck: int | None = None
    activation: str = "gelu"
    train_layer_norms: bool = True
    init_std: float = 1e-3

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"E-adapter activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.bottleneck is not None and self.bottleneck <= 0:
            raise ConfigError("E-adapter bottleneck must be positive")
        if self.layers is not None:
            self.layers = sorted({int(i) for i in self.layers})

    def resolve(self, hidden_size: int, num_layers: int) -> EAdapterConfig:
        """Fill the size-dependent defaults for one backbone and check the layer indices."""
        layers = list(range(num_layers - 1)) if self.layers is None else list(self.layers)
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            raise ConfigError(f"E-adapter layers {bad} outside 0..{num_layers - 1}")
        return EAdapterConfig(
            layers=layers,
            bottleneck=self.bottleneck or default_bottleneck(hidden_size),
            activation=self.activation,
            train_layer_norms=self.train_layer_norms,
            init_std=self.init_std,
        )


__all__ = ["EAdapterConfig", "default_bottleneck"]
