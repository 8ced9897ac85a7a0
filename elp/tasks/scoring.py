"""Score normalisation of an embedding task against a cohort of other voices stored with the set.

Why: a cosine means different things for different voices (a voice near many others scores high with
everyone); normalising by how each clip scores against known other people (S-norm, AS-norm) or by
the cohort's mean (centring) removes that offset. The cohort's embeddings travel in the set's
safetensors (``score_cohort``), the method in its config (``scoring``), so the served score, the
calibrated threshold and the offline tools agree. Torch is imported inside the functions (the
client imports the task modules torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elp.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: score normalisations a set may declare; see :func:`normalised_scores`
SCORING_METHODS = ("centre", "s-norm", "as-norm")


@dataclass
class ScoringConfig:
    """``method`` (:data:`SCORING_METHODS`), the cohort's shape (``cohort_size`` embeddings of
    ``cohort_dim``), ``top_k`` for AS-norm, and where the cohort came from (free text)."""

    method: str
    cohort_size: int
    cohort_dim: int
    top_k: int | None = None
    cohort_from: str = ""

    def __post_init__(self) -> None:
        if self.method not in SCORING_METHODS:
            raise ConfigError(f"scoring method must be one of {SCORING_METHODS}, got {self.method!r}")
        if not isinstance(self.cohort_size, int) or self.cohort_size < 2 or self.cohort_dim < 1:
            raise ConfigError("a scoring cohort needs at least two embeddings of a positive size")
        if (self.top_k is not None) != (self.method == "as-norm"):
            raise ConfigError("top_k is given exactly for method 'as-norm'")
        if self.top_k is not None and not 1 < self.top_k <= self.cohort_size:
            raise ConfigError(f"top_k must be in 2..cohort_size ({self.cohort_size}), got {self.top_k}")

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "top_k": self.top_k}


def normalised_scores(a: torch.Tensor, b: torch.Tensor, scoring: dict[str, Any] | None,
                      cohort: torch.Tensor | None) -> torch.Tensor:
    """Scores of row pairs ``a[i], b[i]`` (n, D): the cosine, or with ``scoring`` normalised against the
    ``cohort`` embeddings (m, D) of other real voices:

    - ``centre``: cosine after subtracting the cohort mean from both embeddings;
    - ``s-norm``: ``((s - mu_a) / sd_a + (s - mu_b) / sd_b) / 2``, mu/sd of each side's cosines to the cohort;
    - ``as-norm``: the same with each side's ``top_k`` highest cohort cosines only (adaptive S-norm).

    Why: a cosine means different things for different voices (a voice near many others scores high with
    everyone); normalising by how the clip scores against known other people removes that offset.
    """
    import torch

    unit = torch.nn.functional.normalize
    a, b = unit(a.float(), dim=-1), unit(b.float(), dim=-1)
    if scoring is None:
        return (a * b).sum(dim=-1).clamp(-1.0, 1.0)
    if cohort is None or cohort.ndim != 2 or cohort.shape[0] < 2:
        raise ValueError("score normalisation needs a cohort of at least two embeddings")
    cohort = unit(cohort.float().to(a.device), dim=-1)
    method = scoring["method"]
    if method == "centre":
        mean = cohort.mean(dim=0)
        return (unit(a - mean, dim=-1) * unit(b - mean, dim=-1)).sum(dim=-1)
    if method not in ("s-norm", "as-norm"):
        raise ValueError(f"unknown scoring method {method!r}; known: {SCORING_METHODS}")
    keep = min(int(scoring.get("top_k", cohort.shape[0])), cohort.shape[0]) if method == "as-norm" \
        else cohort.shape[0]
    raw = (a * b).sum(dim=-1)
    normalised = torch.zeros_like(raw)
    for side in (a, b):
        against = (side @ cohort.T).topk(keep, dim=-1).values
        normalised += (raw - against.mean(dim=-1)) / against.std(dim=-1).clamp(min=1e-4)
    return normalised / 2


