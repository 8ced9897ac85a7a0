"""Verification scoring against a cohort: each normalisation computes what its formula says, and no
scoring is the plain cosine."""

from __future__ import annotations

import pytest
import torch

from elp.tasks.scoring import normalised_scores


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture()
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    return a, b, torch.randn(12, 8, generator=generator) + 0.5


def test_no_scoring_is_the_cosine(data) -> None:
    a, b, _ = data
    expected = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert torch.allclose(normalised_scores(a, b, None, None), expected, atol=1e-6)


def test_s_norm_and_as_norm_follow_the_formula(data) -> None:
    a, b, cohort = data
    raw = (unit(a) * unit(b)).sum(-1)
    for scoring, keep in (({"method": "s-norm"}, 12), ({"method": "as-norm", "top_k": 4}, 4)):
        sides = []
        for side in (a, b):
            top = (unit(side) @ unit(cohort).T).sort(dim=-1, descending=True).values[:, :keep]
            sides.append((raw - top.mean(-1)) / top.std(-1))
        expected = (sides[0] + sides[1]) / 2
        assert torch.allclose(normalised_scores(a, b, scoring, cohort), expected, atol=1e-5)
    # a different cohort gives different scores: the cohort is used, not ignored
    other = normalised_scores(a, b, {"method": "s-norm"}, -cohort)
    assert not torch.allclose(other, normalised_scores(a, b, {"method": "s-norm"}, cohort))


def test_centring_subtracts_the_cohort_mean(data) -> None:
    a, b, cohort = data
    mean = unit(cohort).mean(0)
    expected = (unit(unit(a) - mean) * unit(unit(b) - mean)).sum(-1)
    assert torch.allclose(normalised_scores(a, b, {"method": "centre"}, cohort), expected, atol=1e-6)


def test_bad_scoring_is_refused(data) -> None:
    a, b, cohort = data
    with pytest.raises(ValueError, match="cohort"):
        normalised_scores(a, b, {"method": "s-norm"}, None)
    with pytest.raises(ValueError, match="unknown scoring"):
        normalised_scores(a, b, {"method": "z-norm"}, cohort)



def test_an_enrolment_names_the_clip_that_does_not_sound_like_the_others() -> None:
    """Leave-one-out: each clip against the mean of the others; under the threshold it is an outlier."""
    from types import SimpleNamespace

    from elp.tasks import get_task

    task = get_task("verification")
    config = SimpleNamespace(threshold=0.4, duration_thresholds=None)  # the scoring reads the thresholds only
    voice = torch.tensor([1.0, 0.2, 0.0])
    same = [voice + torch.tensor([0.0, 0.05 * i, 0.02]) for i in range(3)]
    other = torch.tensor([0.0, 0.1, 1.0])
    report = task.enrolment_report(config, [*same, other], {})
    assert report["outlier_clips"] == [3] and report["clip_scores"][3] < 0.4 < min(report["clip_scores"][:3])
    assert all(round(score, 2) == score for score in report["clip_scores"])
    assert task.enrolment_report(config, same[:1], {}) == {}  # one clip: nothing to compare
    # no calibrated threshold: the deployment's
    uncalibrated = SimpleNamespace(threshold=None, duration_thresholds=None)
    assert task.enrolment_report(uncalibrated, same, {"threshold": 1.0})["outlier_clips"] == [0, 1, 2]
