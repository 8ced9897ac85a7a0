"""Answers do not depend on how many threads computed them: loading backbones (``elp.backbones``) turns on
MKL's strict reproducibility before any model runs (the server gives a batch all cores or a share of them by load;
on AMX CPUs a dynamic-int8 encoder's answer moved with the thread count before)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

SCRIPT = """
import elp.backbones, os, torch
torch.manual_seed(0)
# a Whisper base feed-forward output layer on a 3 s clip: the shape where MKL's thread split showed
inputs, weight = torch.randn(1, 150, 2048).relu(), torch.randn(512, 2048) * 0.02
outputs = []
for threads in (1, 2):
    torch.set_num_threads(threads)
    outputs.append(torch.nn.functional.linear(inputs, weight))
print(os.environ["MKL_CBWR"], float((outputs[0] - outputs[1]).abs().max()))
"""


def run(env: dict[str, str]) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    mode, difference = done.stdout.split()
    return mode, float(difference)


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="the setting is MKL's; this torch has no MKL")
def test_the_backbone_library_makes_float_sums_independent_of_the_thread_count() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    assert run(env) == ("AUTO,STRICT", 0.0)


def test_a_users_own_mkl_setting_is_kept() -> None:
    mode, _ = run({**os.environ, "MKL_CBWR": "COMPATIBLE"})
    assert mode == "COMPATIBLE"


def test_the_http_client_leaves_the_users_mkl_alone() -> None:
    """The client imports the task registry (``elp.tasks``), not the model code: no MKL setting for its user."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    done = subprocess.run([sys.executable, "-c", "import clients, os; print(os.environ.get('MKL_CBWR', 'unset'))"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["unset"]
