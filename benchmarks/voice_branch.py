"""The CAM++ voice branch one row at a time vs one masked pass for the batch (issue #20, item 3: what a
verification row costs a GPU).

``verify-default`` carries CAM++ (``elp.heads.campplus``). Its masking and pooling read the whole clip, so rows
either run one pass for each length (the CPU path; seeded 1-10 s clips never share a length, so one by one here)
or in one padded pass whose padded frames are masked (the GPU path; each
row's answer equals its own pass; a batch of one row runs alone in both). On a batch of ``B`` clips of 1-10 s
(seeded), each repeat times both modes in turn, a different one first each repeat. Tables give the median with
min-max, ms a row, the operators one call dispatches (aten operators on a CPU, CUDA kernels on a GPU) and the
largest difference between the modes' unit embeddings. The weights are random unless ``--adapter`` names a set
that carries the branch (the cost does not depend on them).

    python -m benchmarks.voice_branch [--device cuda] [--batch-sizes 1 8 32] [--repeats 5] [--adapter SET]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import markdown_table, write_results
from benchmarks.frontend import mixed_clips, timed_ms
from benchmarks.overhead import operators_dispatched
from benchmarks.stats import load_note, machine_load, round_robin, spread

MODES = ("per_row", "masked")


def load_branch(adapter: str | None, device: str) -> Any:
    """The CAM++ branch of ``adapter`` (first or second voice branch), else a randomly initialised one."""
    from elp.heads.campplus import CamppBranch
    from training.suites.baselines import campplus_branch_of

    return campplus_branch_of(adapter, device) if adapter else CamppBranch().to(device).eval()


def mode_call(branch: Any, mode: str, clips: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """One call of the branch's network over the clips' filterbanks in ``mode`` (unit embeddings)."""
    feats = [branch.features(clip) for clip in clips]

    @torch.inference_mode()
    def call() -> torch.Tensor:
        return F.normalize(branch.embed_rows(feats, one_pass=mode == "masked").float(), dim=-1)

    return call


def measure(branch: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    points: dict[tuple[int, str], dict[str, Any]] = {}
    calls: dict[int, dict[str, Callable[[], torch.Tensor]]] = {}
    for size in args.batch_sizes:
        clips = [clip.to(args.device) for clip in mixed_clips(size, args.seed, args.min_seconds, args.max_seconds)]
        calls[size] = {mode: mode_call(branch, mode, clips) for mode in MODES}
        reference = calls[size]["per_row"]()
        for mode, work in calls[size].items():
            output = work()  # warm-up
            points[(size, mode)] = {"batch": size, "mode": mode, "times": [],
                                    "operators": operators_dispatched(work, args.device),
                                    "max_abs_diff": float((output - reference).abs().max())}
    for repeat in range(args.repeats):
        for size in args.batch_sizes:
            for mode in round_robin(list(MODES), repeat):
                points[(size, mode)]["times"].append(timed_ms(calls[size][mode], args.device, args.calls))
    rows = []
    for point in points.values():
        summary = spread(point.pop("times"))
        per_row = points[(point["batch"], "per_row")]
        rows.append(point | {"median_ms": summary["median"], "min_ms": summary["min"], "max_ms": summary["max"],
                             "ms_per_row": round(summary["median"] / point["batch"], 3)})
        rows[-1]["operators_vs_per_row"] = round(point["operators"] / per_row["operators"], 3)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--adapter", help="a set carrying a CAM++ branch (default: random weights)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=1, help="calls a timing averages")
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="batch sizes 1 and 4, clips of 1-3 s, 2 repeats")
    p.add_argument("--name", default=None, help="results name (default voice-branch-<device>)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.max_seconds, args.repeats = [1, 4], 3.0, 2
    torch.manual_seed(args.seed)
    start = machine_load()
    rows = measure(load_branch(args.adapter, args.device), args)
    end = machine_load()
    title = (f"CAM++ branch per row vs one masked pass, clips of {args.min_seconds:g}-{args.max_seconds:g} s, "
             f"device {args.device}, {args.repeats} repeats (median, min-max); {load_note(start, end)}")
    columns = ["batch", "mode", "median_ms", "min_ms", "max_ms", "ms_per_row", "operators", "operators_vs_per_row",
               "max_abs_diff"]
    table = markdown_table(rows, columns)
    write_results(args.name or f"voice-branch-{args.device.split(':')[0]}",
                  {"title": title, "rows": rows, "load_start": start, "load_end": end},
                  f"{title}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
