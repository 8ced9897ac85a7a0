"""What makes a benchmark on a shared machine worth quoting: systems measured interleaved (round-robin,
each repeat starting with a different system), several repeats per point reported as median and
spread, the machine's load recorded at the start and end, a summary table of ratios, and a plot."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def machine_load() -> dict[str, Any]:
    """Load averages (1, 5, 15 min) and when: other work on the cores moves every number here."""
    one, five, fifteen = os.getloadavg()
    return {"time": time.strftime("%H:%M:%S"), "loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "cpus": os.cpu_count()}


def load_note(start: dict[str, Any], end: dict[str, Any]) -> str:
    return (f"load average (1/5/15 min) {'/'.join(map(str, start['loadavg']))} at {start['time']}, "
            f"{'/'.join(map(str, end['loadavg']))} at {end['time']}, {start['cpus']} CPUs")


def round_robin(items: Sequence[str], turn: int) -> list[str]:
    """``items`` starting at position ``turn``: over repeats every item goes first once, so none always
    runs right after a warm-up or right before the machine got busy."""
    shift = turn % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (the spread of a handful of repeats; an IQR needs more of them)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def median_rows(runs: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` (in first-seen order): each metric's median, plus
    ``<metric>_min`` / ``<metric>_max`` and the number of repeats."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    rows = []
    for group_key, group in groups.items():
        row: dict[str, Any] = dict(zip(keys, group_key, strict=True))
        row["repeats"] = len(group)
        for metric in metrics:
            summary = spread([run[metric] for run in group if run.get(metric) is not None])
            row[metric], row[f"{metric}_min"], row[f"{metric}_max"] = summary["median"], summary["min"], summary["max"]
        rows.append(row)
    return rows


def ratio_table(rows: Sequence[dict[str, Any]], baselines: Sequence[str]) -> list[dict[str, Any]]:
    """Per system: median req/s at each concurrency, its growth from each concurrency to the next (and
    from the lowest to the second highest), and its ratio to each of ``baselines`` present (naive, the
    former policy, the per-task processes) at each concurrency."""
    by_system: dict[str, dict[int, float]] = {}
    for row in rows:
        by_system.setdefault(row["system"], {})[row["concurrency"]] = row["req_per_s"]
    table = []
    for system, points in by_system.items():
        levels = sorted(points)
        summary: dict[str, Any] = {"system": system}
        for level in levels:
            summary[f"c{level}"] = points[level]
        for lower, higher in zip(levels, levels[1:], strict=False):
            summary[f"c{higher}/c{lower}"] = _ratio(points[higher], points[lower])
        if len(levels) > 2:
            summary[f"c{levels[-2]}/c{levels[0]}"] = _ratio(points[levels[-2]], points[levels[0]])
        for other in baselines:
            if other != system and other in by_system:
                for level in levels:
                    summary[f"vs {other} c{level}"] = _ratio(points[level], by_system[other].get(level))
        table.append(summary)
    return table


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def plot_points(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """req/s and p95 against concurrency per system (median, min-max bars) as a PNG; None without
    matplotlib (``pip install -e .[bench]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e .[bench]): no plot")
        return None
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for system in dict.fromkeys(row["system"] for row in rows):
        points = sorted((row for row in rows if row["system"] == system), key=lambda row: row["concurrency"])
        levels = [row["concurrency"] for row in points]
        for axis, metric in zip(axes, ("req_per_s", "p95_ms"), strict=True):
            medians = [row[metric] for row in points]
            below = [row[metric] - row[f"{metric}_min"] for row in points]
            above = [row[f"{metric}_max"] - row[metric] for row in points]
            axis.errorbar(levels, medians, yerr=[below, above], marker="o", capsize=3, label=system)
    for axis, label in zip(axes, ("requests per second (median, min-max)", "p95 latency, ms"), strict=True):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({row["concurrency"] for row in rows}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("concurrency (requests in flight)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
