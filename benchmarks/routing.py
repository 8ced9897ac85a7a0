"""What a mixed batch costs by how many adapter sets it holds, under both E-adapter routings.

One batch of ``--rows`` clips (equal length, so padding plays no part) with its rows spread over 1, 2
and 4 sets (asr/verification/emotion/intent random ELP sets), run per group (each set's modules on
its own rows) and gathered (every row's weights indexed out of stacked weights, one batched matmul:
``ELP_ADAPTER_ROUTING=gathered``). Reported per (sets, routing): operators one ``predict`` dispatches
(aten operators on a CPU; CUDA kernels on a GPU: what a launch-bound GPU pays for one by one) and
the median time of ``--repeats`` calls (the routings and set counts interleaved), with
``vs_one_set`` = that time / the same routing's 1-set time.

    python -m benchmarks.routing [--device cuda] [--rows 8] [--seconds 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import torch

from benchmarks.common import (
    DEFAULT_IDS,
    add_common_args,
    backbone_label,
    markdown_table,
    on_model_thread,
    random_sets_model,
    write_results,
)
from benchmarks.overhead import operator_count, timed_predict
from benchmarks.stats import load_note, machine_load

SET_COUNTS = (1, 2, 4)
TASK_KEYS = tuple(DEFAULT_IDS.values())


def time_routings(model: Any, batch: list[torch.Tensor], plans: dict[int, list[str]], args: argparse.Namespace
                  ) -> tuple[dict[tuple[int, bool], list[float]], dict[tuple[int, bool], int]]:
    """Seconds of each repeat and operators of one call, per (sets, gathered)."""
    timings: dict[tuple[int, bool], list[float]] = {(sets, g): [] for sets in SET_COUNTS for g in (False, True)}
    counts: dict[tuple[int, bool], int] = {}
    with torch.inference_mode():
        for (sets, gathered) in timings:  # warm-up, and the operator counts
            model.gathered_routing = gathered
            timed_predict(model, batch, plans[sets], args.device)
            counts[(sets, gathered)] = operator_count(model, batch, plans[sets], args.device)
        for _ in range(args.repeats):
            for (sets, gathered) in timings:
                model.gathered_routing = gathered
                timings[(sets, gathered)].append(timed_predict(model, batch, plans[sets], args.device))
    return timings, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of every clip")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    load_at_start = machine_load()
    model = random_sets_model(args, f"routing-{backbone_label(args.backbone)}")
    generator = torch.Generator().manual_seed(args.seed)
    clip = torch.randn(int(args.seconds * 16000), generator=generator) * 0.1
    batch = [clip] * args.rows
    plans = {sets: [TASK_KEYS[row % sets] for row in range(args.rows)] for sets in SET_COUNTS}
    timings, counts = on_model_thread(time_routings, model, batch, plans, args)
    load_at_end = machine_load()
    rows = []
    for (sets, gathered), seconds in timings.items():
        one_set = statistics.median(timings[(1, gathered)])
        rows.append({"sets": sets, "routing": "gathered" if gathered else "per-group",
                     "operators": counts[(sets, gathered)],
                     "median_ms": round(statistics.median(seconds) * 1000, 1),
                     "min_ms": round(min(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1),
                     "vs_one_set": round(statistics.median(seconds) / one_set, 3)})
    rows.sort(key=lambda row: (row["routing"], row["sets"]))
    unit = "CUDA kernels" if args.device.startswith("cuda") else "aten operators"
    title = (f"mixed batch by adapter sets, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"{args.rows} rows x {args.seconds:g} s, operators = {unit} per predict, {args.repeats} repeats")
    columns = ["sets", "routing", "operators", "median_ms", "min_ms", "max_ms", "vs_one_set"]
    write_results(f"routing-{backbone_label(args.backbone)}-{args.device.split(':')[0]}",
                  {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows},
                  f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
