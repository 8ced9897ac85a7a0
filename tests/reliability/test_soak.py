"""Short soak (CI): ~30 s of mixed traffic, bad uploads and adapter load/unload churn against a real
server on the tiny backbone. Leaks show as growth after warm-up: no fd or thread growth, a bounded
RSS slope, and every request answered as expected. ``python -m benchmarks.soak --minutes N`` is the
long version."""

from __future__ import annotations

import os

import pytest

from benchmarks.soak import run_soak, soak_store

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SOAK_SECONDS = float(os.environ.get("ELP_SOAK_SECONDS", "30"))
#: generous for 30 s on shared CPUs: the allocator still settles; a per-request leak is far above it
MAX_RSS_SLOPE_MIB_PER_MIN = 40.0


def test_short_soak_has_no_fd_thread_or_memory_growth(tiny_store, tmp_path) -> None:
    backbone, _ = tiny_store
    store = soak_store(backbone, tmp_path / "store")
    # traffic also uses the churned sets, so unloads race in-flight requests (see test_churn_race.py)
    report = run_soak(backbone, store, SOAK_SECONDS, concurrency=4, traffic_uses_churned_sets=True)
    summary = report.summary()
    print(summary)
    assert not report.unexpected, summary
    assert report.ok >= 100, summary
    assert summary["fd_growth"] <= 2, summary
    assert summary["thread_growth"] <= 2, summary
    assert summary["rss_slope_mib_per_min"] <= MAX_RSS_SLOPE_MIB_PER_MIN, summary
