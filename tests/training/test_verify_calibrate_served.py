"""verify_calibrate --served scores trials through the served model itself, in the precision asked
for (``--dtype``): the operating point of a threshold under ELP_DTYPE=int8 is measurable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from elp import load_backbone
from elp.testing import make_random_adapter_set, save_tiny_backbone, seeded_waveform


@pytest.fixture
def served_case(tmp_path: Path) -> tuple[str, str, str]:
    backbone_dir = save_tiny_backbone(tmp_path / "backbone", "whisper")
    make_random_adapter_set(load_backbone(backbone_dir), "verification", seed=3).save(tmp_path / "verify")
    for index in range(4):
        sf.write(tmp_path / f"clip{index}.wav", seeded_waveform(1.0 + 0.2 * index, seed=index).numpy(), 16000)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 clip0.wav clip1.wav\n0 clip0.wav clip2.wav\n1 clip2.wav clip3.wav\n0 clip1.wav clip3.wav\n")
    return str(tmp_path / "verify"), str(trials), str(backbone_dir)


def test_served_scores_follow_the_requested_precision(served_case) -> None:
    from training.verify_calibrate import served_scores

    adapter, trials, backbone = served_case
    full, labels = served_scores(adapter, trials, backbone, "float32")
    reduced, same_labels = served_scores(adapter, trials, backbone, "int8")
    assert labels.tolist() == same_labels.tolist() == [1, 0, 1, 0]
    assert np.isfinite(reduced).all() and not np.array_equal(full, reduced)  # int8 really ran
    assert np.abs(full - reduced).max() < 0.05
    auto, _ = served_scores(adapter, trials, backbone, "auto")  # no calibration for a tiny backbone
    assert np.array_equal(auto, full)
