"""The backbone front end per row vs batched (issue #20, item 3), and on a GPU the batch upload from
pageable vs pinned host memory.

Front end: Whisper's log-mel + two convolutions, or the wav2vec 2.0-family CNN feature encoder +
projection (``Backbone.front_end``), on one padded batch of ``B`` clips of 1-10 s (seeded lengths and
noise: the cost does not depend on the content), run with ``front_end_mode`` "per_row" (a Python loop
over rows, the reference) and "batched" (one call for the batch). Each repeat times every batch size
and, at each, both modes in turn, a different one first each repeat (``benchmarks/stats.py``); tables
give the median of the repeats with min-max, the operators one call dispatches (aten operators on a
CPU, CUDA kernels on a GPU) and the largest difference between the modes' frames. Upload (CUDA only):
``pad_waveforms`` + ``.to(device)`` vs ``PinnedBatchStaging.upload`` (non-blocking from pinned memory),
timed to the end of the copy.

    python -m benchmarks.frontend [--backbone whisper-base|wavlm-base-plus|FOLDER] [--device cuda]
                                  [--batch-sizes 1 8 32] [--repeats 3] [--calls 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import (
    add_common_args,
    backbone_label,
    markdown_table,
    prepare_backbone,
    workdir_for,
    write_results,
)
from benchmarks.overhead import sync
from benchmarks.stats import load_note, machine_load, round_robin, spread

MODES = ("per_row", "batched")
UPLOADS = ("pageable", "pinned")
SAMPLE_RATE = 16000


def mixed_clips(batch_size: int, seed: int, min_s: float, max_s: float) -> list[torch.Tensor]:
    """``batch_size`` clips of seeded lengths uniform in [min_s, max_s] seconds (seeded noise)."""
    generator = torch.Generator().manual_seed(seed * 1000 + batch_size)
    seconds = min_s + (max_s - min_s) * torch.rand(batch_size, generator=generator)
    return [torch.randn(int(s * SAMPLE_RATE), generator=generator) * 0.1 for s in seconds.tolist()]


def timed_ms(work: Callable[[], Any], device: str, calls: int) -> float:
    """Milliseconds per call of ``work``, averaged over ``calls`` calls, the device synchronised."""
    sync(device)
    started = time.perf_counter()
    for _ in range(calls):
        work()
    sync(device)
    return (time.perf_counter() - started) * 1000.0 / calls


def operator_count(work: Callable[[], Any], device: str) -> int:
    """Operators one call dispatches: aten operators on a CPU, CUDA kernels on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        work()
        sync(device)
    if cuda:
        return sum(1 for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA)
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def front_end_call(backbone: Any, mode: str, padded: torch.Tensor, lengths: torch.Tensor) -> Callable[[], Any]:
    def call() -> Any:
        backbone.front_end_mode = mode
        return backbone.front_end(padded, lengths)

    return call


def upload_call(kind: str, clips: list[torch.Tensor], device: str, staging: Any) -> Callable[[], Any]:
    from elp.model import pad_waveforms

    def call() -> Any:
        if kind == "pinned":
            return staging.upload(clips, torch.device(device))
        padded, lengths = pad_waveforms(clips)
        return padded.to(device), lengths.to(device)

    return call


def measure(backbone: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (stage, batch size, variant) timed ``args.repeats`` times, interleaved round-robin."""
    from elp.host_staging import PinnedBatchStaging
    from elp.model import pad_waveforms

    cuda = args.device.startswith("cuda")
    staging = PinnedBatchStaging() if cuda else None
    points: dict[tuple[str, int, str], dict[str, Any]] = {}
    calls: dict[int, dict[str, Callable[[], Any]]] = {}
    for size in args.batch_sizes:
        clips = mixed_clips(size, args.seed, args.min_seconds, args.max_seconds)
        padded, lengths = (t.to(args.device) for t in pad_waveforms(clips))
        calls[size] = {mode: front_end_call(backbone, mode, padded, lengths) for mode in MODES}
        if cuda:
            calls[size].update({kind: upload_call(kind, clips, args.device, staging) for kind in UPLOADS})
        outputs = {mode: calls[size][mode]()[0].float() for mode in MODES}  # warm-up, and the difference
        difference = float((outputs["per_row"] - outputs["batched"]).abs().max())
        padding = 1.0 - float(lengths.sum()) / (size * int(lengths.max()))
        for variant, work in calls[size].items():
            stage = "front_end" if variant in MODES else "upload"
            work()  # warm-up
            points[(stage, size, variant)] = {
                "stage": stage, "batch": size, "variant": variant, "times": [],
                "operators": operator_count(work, args.device),
                "max_abs_diff": difference if stage == "front_end" else None, "padding_share": round(padding, 3),
            }
    with torch.inference_mode():
        for repeat in range(args.repeats):
            for size in args.batch_sizes:
                for variant in round_robin(list(calls[size]), repeat):
                    stage = "front_end" if variant in MODES else "upload"
                    points[(stage, size, variant)]["times"].append(timed_ms(calls[size][variant], args.device,
                                                                            args.calls))
    return summarise(points)


def summarise(points: dict[tuple[str, int, str], dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for (_stage, size, _variant), point in points.items():
        summary = spread(point.pop("times"))
        point.update({"median_ms": summary["median"], "min_ms": summary["min"], "max_ms": summary["max"],
                      "ms_per_row": round(summary["median"] / size, 3)})
        rows.append(point)
    for row in rows:
        baseline = MODES[0] if row["stage"] == "front_end" else UPLOADS[0]
        base = next(other for other in rows if (other["stage"], other["batch"], other["variant"])
                    == (row["stage"], row["batch"], baseline))
        row["vs_" + baseline] = round(row["median_ms"] / base["median_ms"], 3) if base["median_ms"] else None
    return sorted(rows, key=lambda row: (row["stage"], row["batch"], row["variant"] != MODES[0]))


def main(argv: list[str] | None = None) -> int:
    from elp import load_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="calls per timing (their mean is one repeat)")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.repeats, args.calls = [1, 4], 3, 1
    load_at_start = machine_load()
    with workdir_for(args, f"frontend-{backbone_label(args.backbone)}") as workdir:
        backbone = load_backbone(str(prepare_backbone(args.backbone, workdir)), device=args.device)
        with torch.inference_mode():
            rows = measure(backbone, args)
    load_at_end = machine_load()
    unit = "CUDA kernels" if args.device.startswith("cuda") else "aten operators"
    title = (f"front end per row vs batched, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"clips {args.min_seconds:g}-{args.max_seconds:g} s (unsorted), {args.repeats} interleaved repeats of "
             f"{args.calls} calls (median, min-max), operators = {unit} per call")
    columns = ["stage", "batch", "variant", "median_ms", "min_ms", "max_ms", "ms_per_row", "vs_per_row",
               "vs_pageable", "operators", "padding_share", "max_abs_diff"]
    columns = [c for c in columns if any(row.get(c) is not None for row in rows)]
    name = f"frontend-{backbone_label(args.backbone)}-{args.device.split(':')[0]}"
    write_results(name, {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows},
                  f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
