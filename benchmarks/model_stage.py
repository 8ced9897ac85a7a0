"""Where one model-stage call (``head_outputs``) spends its time: the question a launch-bound GPU asks.

A server on a GPU was measured with its model thread busy 86% of the time while the GPU itself did a
few ms of arithmetic per batch (``server_profile.py``, ``routing.py`` on an H200): the call costs what
the host does around the kernels. For a mixed batch of ``--rows`` clips of 1-10 s over 1 and 4 random
sets this reports, per set count: the median wall time of ``--repeats`` calls; on CUDA the summed
kernel time (``gpu_busy_share`` = kernel time / wall time) and the host-device synchronisations one
call makes (``torch.cuda.set_sync_debug_mode``), by source line; and the Python functions with the most
own time in one call (cProfile), so the next change aims at what is measured.

    python -m benchmarks.model_stage [--device cuda] [--rows 16] [--repeats 10]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
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
from benchmarks.overhead import sync
from benchmarks.stats import load_note, machine_load

TASK_KEYS = tuple(DEFAULT_IDS.values())


def synchronisations(model: Any, batch: list[torch.Tensor], keys: list[str]) -> Counter[str]:
    """Source lines (``file:line``) of the host-device synchronisations one call makes (CUDA only)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            model.head_outputs(batch, keys)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))


def kernel_ms(model: Any, batch: list[torch.Tensor], keys: list[str]) -> float:
    """Summed CUDA kernel time of one call (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model.head_outputs(batch, keys)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(getattr(e, "self_device_time_total", 0.0) for e in kernels) / 1000


def own_time(model: Any, batch: list[torch.Tensor], keys: list[str], top: int, device: str
             ) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    model.head_outputs(batch, keys)
    sync(device)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (calls, primitive, own, cumulative, callers)
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_ms": round(own * 1000, 2),
             "cumulative_ms": round(cumulative * 1000, 2)}
            for (file, line, name), (_, calls, own, cumulative, _) in ranked]


def measure(model: Any, batch: list[torch.Tensor], args: argparse.Namespace) -> dict[str, Any]:
    cuda = args.device.startswith("cuda")
    report: dict[str, Any] = {"sets": [], "syncs": {}, "profile": {}}
    with torch.inference_mode():
        for sets in (1, 4):
            keys = [TASK_KEYS[row % sets] for row in range(len(batch))]
            model.head_outputs(batch, keys)  # warm-up at this shape
            seconds = []
            for _ in range(args.repeats):
                sync(args.device)
                started = time.perf_counter()
                model.head_outputs(batch, keys)
                sync(args.device)
                seconds.append(time.perf_counter() - started)
            wall_ms = statistics.median(seconds) * 1000
            row: dict[str, Any] = {"sets": sets, "median_ms": round(wall_ms, 2),
                                   "min_ms": round(min(seconds) * 1000, 2), "max_ms": round(max(seconds) * 1000, 2)}
            if cuda:
                syncs = synchronisations(model, batch, keys)
                busy = kernel_ms(model, batch, keys)
                row.update(kernel_ms=round(busy, 2), gpu_busy_share=round(busy / wall_ms, 3),
                           syncs=sum(syncs.values()))
                report["syncs"][sets] = dict(syncs.most_common())
            report["sets"].append(row)
            report["profile"][sets] = own_time(model, batch, keys, args.top, args.device)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--top", type=int, default=15, help="functions listed by own time")
    args = parser.parse_args(argv)
    load_at_start = machine_load()
    model = random_sets_model(args, f"model-stage-{backbone_label(args.backbone)}")
    generator = torch.Generator().manual_seed(args.seed)
    seconds = [1 + 9 * (row + 0.5) / args.rows for row in range(args.rows)]
    batch = [torch.randn(int(s * 16000), generator=generator) * 0.1 for s in seconds]
    report = on_model_thread(measure, model, batch, args)
    load_at_end = machine_load()
    title = (f"one head_outputs call, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"{args.rows} rows of 1-10 s over 1 or 4 sets, {args.repeats} repeats")
    columns = [c for c in ("sets", "median_ms", "min_ms", "max_ms", "kernel_ms", "gpu_busy_share", "syncs")
               if c in report["sets"][0]]
    parts = [f"{title}\n{load_note(load_at_start, load_at_end)}\n", markdown_table(report["sets"], columns)]
    for sets, lines in report["syncs"].items():
        parts.append(f"\nsynchronisations, {sets} set(s): " + ", ".join(f"{k} x{v}" for k, v in lines.items()))
    for sets, rows in report["profile"].items():
        parts += [f"\nown time, {sets} set(s), one call:\n",
                  markdown_table(rows, ["function", "calls", "own_ms", "cumulative_ms"])]
    write_results(f"model-stage-{backbone_label(args.backbone)}-{args.device.split(':')[0]}",
                  {"title": title, "load_start": load_at_start, "load_end": load_at_end, **report}, "\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
