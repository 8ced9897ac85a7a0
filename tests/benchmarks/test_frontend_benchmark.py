"""benchmarks/frontend.py on a tiny backbone: both front-end modes (and Whisper's log-mel alone) at
every batch size in every repeat, their outputs equal, the ratios taken against the per-row loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.common as common
from benchmarks import frontend


def test_frontend_benchmark_times_both_modes_interleaved(tiny_backbone_dir, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    backbone = tiny_backbone_dir("whisper")
    assert frontend.main(["--backbone", str(backbone), "--batch-sizes", "1", "3", "--repeats", "3", "--calls", "1",
                          "--max-seconds", "2"]) == 0
    document = json.loads((tmp_path / "results" / f"frontend-{backbone.name}-cpu.json").read_text())
    rows = {(row["stage"], row["batch"], row["variant"]): row for row in document["rows"]}
    assert set(rows) == {(stage, size, mode) for stage in ("front_end", "log_mel") for size in (1, 3)
                         for mode in frontend.MODES}
    for (_stage, _size, mode), row in rows.items():
        assert row["min_ms"] <= row["median_ms"] <= row["max_ms"] and row["operators"] > 0
        if mode == "per_row":
            assert row["vs_reference"] == 1.0 and row["max_abs_diff"] is None
        else:
            assert row["vs_reference"] > 0 and row["max_abs_diff"] < 1e-5
    for stage in ("front_end", "log_mel"):  # the loop dispatches operators per row
        assert rows[(stage, 3, "per_row")]["operators"] > rows[(stage, 3, "batched")]["operators"]
    assert document["load_start"]["loadavg"] and "repeats" in document["title"]


def test_mixed_clips_are_seeded_and_within_the_range() -> None:
    clips = frontend.mixed_clips(8, seed=0, min_s=1.0, max_s=10.0)
    again = frontend.mixed_clips(8, seed=0, min_s=1.0, max_s=10.0)
    assert all(16000 <= clip.numel() <= 160000 for clip in clips)
    assert [clip.numel() for clip in clips] == [clip.numel() for clip in again]
    assert len({clip.numel() for clip in clips}) > 1
