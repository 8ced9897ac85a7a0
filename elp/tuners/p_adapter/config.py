"""Configuration of the P-adapter: where the pseudo frames go and how they are parameterised."""

from __future__ import annotations

from dataclasses import dataclass

from elp.errors import ConfigError

POSITIONS = ("prefix", "suffix")
FORMS = ("linear", "nonlinear")


@dataclass
class PAdapterConfig:
    """``num_frames`` pseudo frames of width d, inserted after the front end (project choice: after
    the feature projection for wav2vec 2.0-style encoders, after the positional embedding for Whisper,
    so the real frames keep their absolute positions). ``nonlinear`` re-parameterises them through an
    MLP as in prefix tuning; ``hidden`` is that MLP's width."""

    num_frames: int = 8
    position: str = "prefix"
    form: str = "linear"
    hidden: int | None = None

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ConfigError(f"P-adapter position must be one of {POSITIONS}, got {self.position!r}")
        if self.form not in FORMS:
            raise ConfigError(f"P-adapter form must be one of {FORMS}, got {self.form!r}")
        if not 1 <= self.num_frames <= 256:
            raise ConfigError("P-adapter num_frames must be in 1..256")

    def resolve(self, hidden_size: int) -> PAdapterConfig:
        hidden = self.hidden or (hidden_size // 2 if self.form == "nonlinear" else None)
        return PAdapterConfig(self.num_frames, self.position, self.form, hidden)
