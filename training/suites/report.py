"""Markdown tables of suite records: rows = set x metric (plus baseline rows), columns near / far / human.

    python -m training.suites.report results/suites.json [more.json ...] > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from elp.tasks import get_task
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


def markdown(records: list[dict], command: str = "") -> str:
    missing = sorted({f"{r['set']}: {r['data']}" for r in records if "missing" in r})
    parts = ["Cells: value (clips or trials). Rates are corpus-level (CER/WER) or per trial.\n",
             "### The sets on every suite (every clip unless --max-clips capped them)\n", table(records, subset=False)]
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
