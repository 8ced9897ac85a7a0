"""Markdown tables of suite records: rows = set x metric (plus baseline rows), columns near / far / human.

    python -m training.suites.report results/suites.json [more.json ...] > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from elp.tasks import get_task
from training.metrics import paired_bootstrap
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
    """Each later ASR set against the first one on the same clips: the rate differences in points with a 95%
    paired-bootstrap interval (``training.metrics.paired_bootstrap``), so a refit's gain can be told from noise."""
    full = [r for r in records if "per_clip" in r and not r.get("subset")]
    if len({r["set"] for r in full}) < 2:
        return ""
    first = full[0]["set"]
    reference = {(r["data"], r["variant"]): r for r in full if r["set"] == first}
    lines = []
    for record in full:
        base = reference.get((record["data"], record["variant"]))
        if record["set"] == first or base is None or base["per_clip"]["ids"] != record["per_clip"]["ids"]:
            continue
        cells = []
        for unit in ("char", "word"):
            d = paired_bootstrap(np.array(base["per_clip"][unit]), np.array(record["per_clip"][unit]))
            cells.append(f"{100 * d.difference:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({100 * d.better:.0f}%)")
        name = record["suite"] + (f" ({record['variant']})" if record["variant"] else "")
        lines.append(f"| {record['set']} | {name} | {record['n']} | " + " | ".join(cells) + " |\n")
    if not lines:
        return ""
    return (f"\n### Against {first}, on the same clips: difference in points, 95% paired-bootstrap interval "
            "(share of 2,000 draws where the set makes fewer errors)\n\n"
            "| set | suite | clips | CER | WER |\n|---|---|---:|---|---|\n" + "".join(lines))


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
