"""The backbone front end per row vs batched (issue #20, item 3), and on a GPU the batch upload from
pageable vs pinned host memory.

Stages: ``front_end`` (Whisper's log-mel + two convolutions, or the wav2vec 2.0-family CNN feature
encoder + projection: ``Backbone.front_end``) and, for Whisper, ``log_mel`` alone, on one padded batch
of ``B`` clips of 1-10 s in arrival order (seeded lengths and noise: the cost does not depend on the
content), each with ``front_end_mode`` "per_row" (a Python loop over rows: the reference) and
"batched" (one call for the batch); ``upload`` (CUDA only): ``pad_waveforms`` + ``.to(device)``
("pageable", the reference) vs ``PinnedBatchStaging.upload`` ("pinned", non-blocking), timed to the
end of the copy. Each repeat times every batch size and, at each, every (stage, variant) in turn, a
different one first each repeat (``benchmarks/stats.py``). Tables give the median of the repeats with
min-max, ``vs_reference`` (median / the stage's reference median), the operators one call dispatches
(aten operators on a CPU, CUDA kernels on a GPU) and the largest difference between the modes' outputs.

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
from benchmarks.overhead import operators_dispatched, sync
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


def mode_call(backbone: Any, method: str, mode: str, padded: torch.Tensor, lengths: torch.Tensor
              ) -> Callable[[], torch.Tensor]:
    """``backbone.<method>(padded, lengths)`` in ``mode``, returning its frames (or log-mels)."""
    def call() -> torch.Tensor:
        backbone.front_end_mode = mode
        output = getattr(backbone, method)(padded, lengths)
        return output[0] if isinstance(output, tuple) else output

    return call


def upload_call(kind: str, clips: list[torch.Tensor], device: str, staging: Any) -> Callable[[], Any]:
    from elp.model import pad_waveforms

    def call() -> Any:
        if kind == "pinned":
            return staging.upload(clips, torch.device(device))
        padded, lengths = pad_waveforms(clips)
        return padded.to(device), lengths.to(device)

    return call


def stage_calls(backbone: Any, clips: list[torch.Tensor], device: str, staging: Any
                ) -> dict[tuple[str, str], Callable[[], Any]]:
    """(stage, variant) -> one call: the front end in both modes, Whisper's log-mel alone in both
    modes, and on CUDA the two uploads; the first variant of each stage is its reference."""
    from elp.model import pad_waveforms

    padded, lengths = (tensor.to(device) for tensor in pad_waveforms(clips))
    methods = ["front_end"] + (["log_mels"] if hasattr(backbone, "log_mels") else [])
    calls = {(method.rstrip("s"), mode): mode_call(backbone, method, mode, padded, lengths)
             for method in methods for mode in MODES}
    if staging is not None:
        calls.update({("upload", kind): upload_call(kind, clips, device, staging) for kind in UPLOADS})
    return calls


def measure(backbone: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (batch size, stage, variant) timed ``args.repeats`` times, interleaved round-robin."""
    from elp.host_staging import PinnedBatchStaging

    staging = PinnedBatchStaging() if args.device.startswith("cuda") else None
    points: dict[tuple[int, str, str], dict[str, Any]] = {}
    calls: dict[int, dict[tuple[str, str], Callable[[], Any]]] = {}
    for size in args.batch_sizes:
        clips = mixed_clips(size, args.seed, args.min_seconds, args.max_seconds)
        calls[size] = stage_calls(backbone, clips, args.device, staging)
        padding = 1.0 - sum(clip.numel() for clip in clips) / (size * max(clip.numel() for clip in clips))
        for (stage, variant), work in calls[size].items():
            output = work()  # warm-up
            difference = None
            if variant == MODES[1]:  # the batched output against the per-row one
                difference = float((calls[size][(stage, MODES[0])]().float() - output.float()).abs().max())
            points[(size, stage, variant)] = {
                "stage": stage, "batch": size, "variant": variant, "times": [],
                "operators": operators_dispatched(work, args.device), "padding_share": round(padding, 3),
                "max_abs_diff": difference,
            }
    for repeat in range(args.repeats):
        for size in args.batch_sizes:
            for key in round_robin(list(calls[size]), repeat):
                points[(size, *key)]["times"].append(timed_ms(calls[size][key], args.device, args.calls))
    return summarise(list(points.values()))


def summarise(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and min-max of each point's times, per row, and against its stage's reference variant."""
    for point in points:
        summary = spread(point.pop("times"))
        point.update({"median_ms": summary["median"], "min_ms": summary["min"], "max_ms": summary["max"],
                      "ms_per_row": round(summary["median"] / point["batch"], 3)})
    references = {(point["batch"], point["stage"]): point for point in points
                  if point["variant"] in (MODES[0], UPLOADS[0])}
    for point in points:
        reference = references[(point["batch"], point["stage"])]["median_ms"]
        point["vs_reference"] = round(point["median_ms"] / reference, 3) if reference else None
    return sorted(points, key=lambda point: (point["stage"] != "front_end", point["stage"], point["batch"],
                                             point["variant"] not in (MODES[0], UPLOADS[0])))


def main(argv: list[str] | None = None) -> int:
    from elp import load_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2, help="calls per timing (their mean is one repeat)")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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
             f"{args.calls} calls (median, min-max), {torch.get_num_threads()} torch threads, "
             f"operators = {unit} per call")
    columns = ["stage", "batch", "variant", "median_ms", "min_ms", "max_ms", "ms_per_row", "vs_reference",
               "operators", "padding_share", "max_abs_diff"]
    columns = [c for c in columns if any(row.get(c) is not None for row in rows)]
    name = f"frontend-{backbone_label(args.backbone)}-{args.device.split(':')[0]}"
    name += f"-{args.threads}t" if args.threads else ""
    write_results(name, {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows},
                  f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
