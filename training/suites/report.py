"""Markdown tables of suite records: rows = set x metric (plus baseline rows), columns near / far / human.

    python -m training.suites.report results/suites.json [more.json ...] > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from elp.tasks import get_task
from training.metrics import PAIRED_UNITS, paired_metric
from training.suites.evaluate import SUITES

METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "asr": (("cer", "CER"), ("wer", "WER")),
    "verification": (("eer", "EER"), ("false_accept", "impostors accepted at the threshold"),
                     ("false_reject", "genuine pairs rejected at the threshold"), ("threshold", "threshold")),
    "intent": (("accuracy", "accuracy"),),
    "emotion": (("accuracy", "accuracy (WA)"), ("unweighted_accuracy", "UA")),
}


def metric_labels(task: str) -> tuple[tuple[str, str], ...]:
    """(metric, label) rows of a task's table: those above, else the metrics its task reports."""
    return METRICS.get(task) or tuple((metric, metric) for metric in get_task(task).metrics)


def _cell(metric: str, record: dict) -> str:
    value = record.get(metric)
    if value is None:
        return ""
    text = f"{value:.3f}" if metric == "threshold" else f"{100 * value:.1f}%"
    return f"{text} ({record['n']})"


def table(records: list[dict], subset: bool) -> str:
    """One markdown table; ``subset`` picks the baseline comparison (capped, same clips) records."""
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for record in records:
        if record.get("subset") != subset or "missing" in record:
            continue
        for metric, label in metric_labels(record["task"]):
            cell = _cell(metric, record)
            if not cell:
                continue
            name = label + (f" ({record['variant']})" if record["variant"] else "")
            rows.setdefault((record["set"], record["system"], name), {})[record["suite"]] = cell
    header = "| set | system | metric | " + " | ".join(SUITES) + " |\n|---|---|---|" + "---|" * len(SUITES) + "\n"
    return header + "".join(f"| {s} | {system} | {metric} | " + " | ".join(cells.get(c, "") for c in SUITES) + " |\n"
                            for (s, system, metric), cells in rows.items())


def paired(records: list[dict]) -> str:
    """Each later set against the first one of its task on the same clips: the difference in points with a 95%
    paired-bootstrap interval (``training.metrics.paired_bootstrap``), so a refit's gain can be told from noise."""
    full = [r for r in records if "per_clip" in r and not r.get("subset")]
    firsts = {r["task"]: r["set"] for r in reversed(full)}
    reference = {(r["task"], r["data"], r["variant"]): r for r in full if firsts[r["task"]] == r["set"]}
    lines = []
    for record in full:
        base = reference.get((record["task"], record["data"], record["variant"]))
        same_clips = base is not None and base["per_clip"]["ids"] == record["per_clip"]["ids"]
        if record["set"] == firsts[record["task"]] or not same_clips:
            continue
        name = record["suite"] + (f" ({record['variant']})" if record["variant"] else "")
        for unit in PAIRED_UNITS:
            if unit not in record["per_clip"]:
                continue
            metric, d = paired_metric(np.array(base["per_clip"][unit]), np.array(record["per_clip"][unit]), unit)
            lines.append(f"| {record['set']} | {firsts[record['task']]} | {name} | {record['n']} | {metric} | "
                         f"{100 * d.difference:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] | "
                         f"{100 * d.better:.0f}% |\n")
    if not lines:
        return ""
    return ("\n### Each set against the first of its task, on the same clips: difference in points, 95% "
            "paired-bootstrap interval, share of 2,000 draws where the set makes fewer errors\n\n"
            "| set | against | suite | clips | metric | difference | fewer errors |\n|---|---|---|---:|---|---|---:|\n"
            + "".join(lines))


def markdown(records: list[dict], command: str = "") -> str:
    missing = sorted({f"{r['set']}: {r['data']}" for r in records if "missing" in r})
    parts = ["Cells: value (clips or trials). Rates are corpus-level (CER/WER) or per trial.\n",
             "### The sets on every suite (every clip unless --max-clips capped them)\n", table(records, subset=False)]
    parts.append(paired(records))
    if any(r.get("subset") for r in records):
        parts += ["\n### Baselines, on evenly spread subsets of the same clips and trials (the set re-scored on "
                  "exactly those)\n", table(records, subset=True)]
    if missing:
        parts.append("\nNot built when measured: " + ", ".join(missing) + "\n")
    if command:
        parts.insert(0, f"Command: `{command}`\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    records = [r for path in paths for r in json.loads(Path(path).read_text())["records"]]
    print(markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
