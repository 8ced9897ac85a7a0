"""benchmarks/model_stage.py on a tiny backbone: both set counts timed, the profile names the model's own
functions, and on CUDA the kernel time and the synchronisations one call makes are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import benchmarks.common as common
from benchmarks import model_stage


def _run(backbone: Path, tmp_path: Path, device: str) -> dict:
    assert model_stage.main(["--backbone", str(backbone), "--device", device, "--rows", "4", "--repeats", "2",
                             "--top", "40", "--workdir", str(tmp_path / "work")]) == 0
    return json.loads((tmp_path / "results" / f"model-stage-{backbone.name}-{device}.json").read_text())


def test_model_stage_times_one_and_four_sets_and_profiles_the_call(tiny_backbone_dir, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    document = _run(tiny_backbone_dir("whisper"), tmp_path, "cpu")
    assert [row["sets"] for row in document["sets"]] == [1, 4]
    for row in document["sets"]:
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]
        assert "syncs" not in row  # host-device synchronisations exist on CUDA only
    for rows in document["profile"].values():
        assert any(row["function"].startswith("model.py:") for row in rows)  # the model's own code is listed
        assert all(row["calls"] >= 1 and row["cumulative_ms"] >= row["own_ms"] >= 0 for row in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_it_counts_kernel_time_and_synchronisations(tiny_backbone_dir, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    document = _run(tiny_backbone_dir("whisper"), tmp_path, "cuda")
    for row in document["sets"]:
        assert row["kernel_ms"] > 0 and row["gpu_busy_share"] > 0 and row["syncs"] >= 1  # at least the copy home
    assert document["syncs"]
