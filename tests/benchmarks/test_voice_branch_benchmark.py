"""benchmarks/voice_branch.py: both CAM++ modes at every batch size in every repeat, their answers equal, the
masked pass dispatching fewer operators than the per-row loop once there are several rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.common as common
from benchmarks import voice_branch


def test_voice_branch_benchmark_times_both_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    assert voice_branch.main(["--batch-sizes", "1", "3", "--repeats", "2", "--max-seconds", "2.5",
                              "--name", "voice"]) == 0
    document = json.loads((tmp_path / "results" / "voice.json").read_text())
    rows = {(row["batch"], row["mode"]): row for row in document["rows"]}
    assert set(rows) == {(size, mode) for size in (1, 3) for mode in voice_branch.MODES}
    for row in rows.values():
        assert row["min_ms"] <= row["median_ms"] <= row["max_ms"] and row["max_abs_diff"] < 1e-5
    assert rows[(3, "masked")]["operators"] < rows[(3, "per_row")]["operators"]
    assert rows[(3, "per_row")]["operators"] > 2 * rows[(1, "per_row")]["operators"]
    assert document["load_start"]["loadavg"] and "repeats" in document["title"]


def test_a_set_without_a_campplus_branch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no CAM"):
        voice_branch.load_branch("adapters_store/verify-ge2e", "cpu")
