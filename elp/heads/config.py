"""Head configuration shared by every task (the tasks themselves: ``elp.tasks``)."""

from __future__ import annotations

from dataclasses import dataclass

from elp.errors import ConfigError

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
    (:mod:`elp.heads.prosody`), normalised and projected to ``prosody_dim``, beside the pooled frames.
    ``pitch_weight`` > 0 (speaker head): the embedding also carries the clip's median pitch, as two
    coordinates on a circle (angle ``pitch_angle`` radians per standard deviation of the training
    clips' pitch) weighted so that the cosine of two embeddings becomes
    ``(cos_voice + pitch_weight * cos(pitch_angle * dz)) / (1 + pitch_weight)``: score fusion of a
    prosodic speaker cue that enrolment averaging and cosine scoring handle unchanged.
    ``context_blocks`` (CTC head): residual depthwise-convolution blocks (``context_kernel`` frames wide)
    before the output layer. Every other trained part of a set works frame by frame (E-adapters on the
    FFN output, L-adapters per layer), so spelling a sound from its neighbours (English orthography)
    rests on the frozen attention alone; these blocks give the head its own trained context."""

    hidden_dim: int = 256
    pooling: str = "mean"
    embedding_dim: int = 256
    dropout: float = 0.1
    factorized_slots: bool = False
    prosody: bool = False
    prosody_dim: int = 64
    pitch_weight: float = 0.0
    pitch_angle: float = 0.75
    context_blocks: int = 0
    context_kernel: int = 9

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.hidden_dim < 0 or self.embedding_dim <= 0 or self.prosody_dim <= 0:
            raise ConfigError("head sizes must be positive")
        if self.pitch_weight < 0 or not 0 < self.pitch_angle <= 3.15:
            raise ConfigError("pitch_weight must be >= 0 and pitch_angle in (0, pi]")
        if self.context_blocks < 0 or self.context_kernel < 1 or self.context_kernel % 2 == 0:
            raise ConfigError("context_blocks must be >= 0 and context_kernel a positive odd width")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be in [0, 1)")
