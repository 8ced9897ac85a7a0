"""Head configuration shared by the four tasks."""

from __future__ import annotations

from dataclasses import dataclass

from elp.errors import ConfigError

TASKS = ("asr", "verification", "emotion", "intent")
POOLINGS = ("mean", "stats", "max")


@dataclass
class HeadConfig:
    """``hidden_dim``: width of the projection before pooling (pooled heads) or of the optional
    hidden layer of the CTC head (0 = linear CTC head, the reference setup). ``embedding_dim``:
    speaker embedding size. ``dropout`` applies in training only. ``pooling``: ``max`` keeps the
    strongest frame per unit (keyword-like evidence), ``stats`` is mean and std. ``factorized_slots``
    (intents written ``action_object_location``): score each slot value and sum them per intent, so an
    intent's score is shared with every intent that has the same action, object or location.
    ``prosody`` (pooled heads): also read the clip's pitch, loudness, tilt and voicing statistics
    (:mod:`elp.heads.prosody`), normalised and projected to ``prosody_dim``, beside the pooled frames."""

    hidden_dim: int = 256
    pooling: str = "mean"
    embedding_dim: int = 256
    dropout: float = 0.1
    factorized_slots: bool = False
    prosody: bool = False
    prosody_dim: int = 64

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.hidden_dim < 0 or self.embedding_dim <= 0 or self.prosody_dim <= 0:
            raise ConfigError("head sizes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
