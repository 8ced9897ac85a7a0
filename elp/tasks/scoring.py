"""Score normalisation of verification scores against a cohort of other voices (S-norm, AS-norm,
cohort-mean centring): the formulas ``training.verify_norm`` compares on validation trials.

Why: a cosine means different things for different voices (a voice near many others scores high with
everyone); normalising by how each clip scores against known other people removes that offset.
``centre`` is served as an embedding shift (``HeadConfig.centred``: the shipped verify-ge2e, chosen on
validation in the eleventh session; the CAM++ verify-default scores plain cosines, chosen the same way); S-norm
and AS-norm are not served (none passed a ship rule, see the verify-ge2e card). Torch is imported inside the
function (task modules import torch-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: score normalisations a set may declare; see :func:`normalised_scores`
SCORING_METHODS = ("centre", "s-norm", "as-norm")


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


