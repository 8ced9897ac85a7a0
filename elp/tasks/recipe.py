"""A task's training defaults for ``elp-train`` and ``training.cached``: what the recipe cannot derive
from the task's target kind (learning rates per parameter group, and which waveform augmentations
would erase what the task's answers are made of)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingRecipe:
    """``paper_rates`` / ``fast_rates``: (head, L-adapters, E-adapters) learning rates of elp-train's
    ``--lr-preset paper`` (ELP.md's values for long schedules) and ``fast`` (this recipe's short
    schedules). ``augment``: overrides of ``training.dataset.AugmentConfig`` as (field, value) pairs
    (a tuple, so a spec stays hashable)."""

    paper_rates: tuple[float, float, float] = (5e-4, 1e-4, 5e-5)
    fast_rates: tuple[float, float, float] = (1e-3, 5e-4, 2e-4)
    augment: tuple[tuple[str, Any], ...] = ()

    def rates(self, preset: str) -> tuple[float, float, float]:
        presets = {"paper": self.paper_rates, "fast": self.fast_rates}
        if preset not in presets:
            raise ValueError(f"learning-rate preset must be one of {sorted(presets)}, got {preset!r}")
        return presets[preset]

    def augment_overrides(self) -> dict[str, Any]:
        return dict(self.augment)
