"""training.label_bias: the fitted prior undoes a known lean towards one label."""

from __future__ import annotations

import torch

from training.label_bias import accuracy, fit_bias


def test_fit_bias_undoes_a_lean_towards_one_label() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(4).repeat(150)
    clean = torch.randn(600, 4, generator=generator) * 0.8
    clean[torch.arange(600), targets] += 1.5
    lean = torch.tensor([0.0, 2.0, 0.0, 0.0])  # the decoder's prior favours label 1 ("en")
    log_probs = (clean + lean).log_softmax(-1)
    bias = fit_bias(log_probs, targets, l2=0.0)
    assert bias[0] == 0
    assert torch.allclose(bias - bias.mean(), -(lean - lean.mean()), atol=0.25)
    before, after = accuracy(log_probs, targets, torch.zeros(4)), accuracy(log_probs, targets, bias)
    assert after["unweighted_accuracy"] > before["unweighted_accuracy"] + 0.1
    assert after["unweighted_accuracy"] >= accuracy(clean.log_softmax(-1), targets, torch.zeros(4))[
        "unweighted_accuracy"] - 0.02
