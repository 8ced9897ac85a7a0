"""Where and how the raw model runs on a CPU: main thread vs a thread of its own, and a batch's calls.

* ``threads``: one call of a ``--seconds`` clip (Whisper base, random sets), timed on the main thread
  and on a second thread, with 1 and 2 torch intra-op threads (median of ``--calls``; CPU ms too).
  Why ``benchmarks.overhead`` times its raw loops on a thread of their own, as the server does.
* ``splits``: the rows of a load's request plan (``benchmarks.loadgen.request_plan``) in batches of
  ``--batch-size`` (windows of 2B requests sorted by length, as ``overhead`` replays them), each batch
  run as one call, split into near-equal-length calls at ratio 0.9 (what the server's worker does,
  ``server.batch_support.length_chunks``), or one call per row; on a worker thread, in rotating order.

    python -m benchmarks.model_calls --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from benchmarks.common import (
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    decode_clip,
    default_sets,
    on_model_thread,
    prepare_backbone,
    workdir_for,
)
from benchmarks.loadgen import request_plan
from benchmarks.overhead import TASK_KEYS, load_model, plan_batches
from benchmarks.stats import load_note, machine_load
from server.batch_support import length_chunks

SPLITS: dict[str, Callable[[list[int]], list[tuple[int, int]]]] = {
    "one call per batch": lambda lengths: [(0, len(lengths))],
    "split at ratio 0.9 (server)": lambda lengths: length_chunks(lengths, 0.9),
    "one call per row": lambda lengths: [(i, i + 1) for i in range(len(lengths))],
}


def time_calls(model: Any, waveform: torch.Tensor, threads: int, calls: int) -> tuple[float, float]:
    """(median wall ms, CPU ms per call) of ``calls`` calls on this thread with ``threads`` intra-op threads."""
    torch.get_num_threads()  # torch's lazy per-thread initialisation first, or it overrides the line below
    torch.set_num_threads(threads)
    model.head_outputs([waveform], [TASK_KEYS[0]])
    walls, cpu_started = [], time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        model.head_outputs([waveform], [TASK_KEYS[0]])
        walls.append(time.perf_counter() - started)
    return 1000 * statistics.median(walls), 1000 * (time.process_time() - cpu_started) / calls


def thread_rows(model: Any, args: argparse.Namespace) -> list[str]:
    waveform = torch.randn(int(16000 * args.seconds), generator=torch.Generator().manual_seed(0)) * 0.1
    process_threads, lines = torch.get_num_threads(), []
    for repeat in range(args.repeats):
        for threads in (1, 2):
            for place in ("main thread", "second thread"):
                def work(threads: int = threads) -> tuple[float, float]:
                    return time_calls(model, waveform, threads, args.calls)
                wall, cpu = work() if place == "main thread" else on_model_thread(work)
                lines.append(f"| {repeat} | {place} | {threads} | {wall:.1f} | {cpu:.1f} |")
    torch.set_num_threads(process_threads)
    return lines


def split_rows(model: Any, args: argparse.Namespace) -> list[str]:
    clips = corpus_clips(48, seed=args.seed)
    waveforms = {clip.name: torch.from_numpy(decode_clip(clip.data)) for clip in clips}
    batches = plan_batches(request_plan(clips, args.requests, seed=args.seed), waveforms, args.batch_size)
    rows = sum(len(batch) for batch, _ in batches)
    worker = ThreadPoolExecutor(1, thread_name_prefix="raw-model")

    def run(split: Callable[[list[int]], list[tuple[int, int]]]) -> float:
        started = time.perf_counter()
        for batch, keys in batches:
            for start, stop in split([len(w) for w in batch]):
                model.head_outputs(batch[start:stop], keys[start:stop])
        return time.perf_counter() - started

    worker.submit(run, SPLITS["one call per row"]).result()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in SPLITS}
    names = list(SPLITS)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            seconds[name].append(worker.submit(run, SPLITS[name]).result())
    worker.shutdown()
    calls = {name: sum(len(split([len(w) for w in batch])) for batch, _ in batches) for name, split in SPLITS.items()}
    return [f"| {name} | {calls[name]} | {rows / statistics.median(seconds[name]):.2f} | "
            f"{rows / max(seconds[name]):.2f}-{rows / min(seconds[name]):.2f} |" for name in SPLITS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length of the threads table")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per point of the threads table")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32, help="requests in the plan of the splits table")
    args = parser.parse_args(argv)
    with workdir_for(args, f"model-calls-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", default_sets())
        model = load_model(backbone, store, args.device)
        load_at_start = machine_load()
        threads = thread_rows(model, args)
        splits = split_rows(model, args)
        load_at_end = machine_load()
    print(load_note(load_at_start, load_at_end), "\n")
    print("| repeat | where | intra-op threads | ms per call (median) | CPU ms per call |\n|---|---|---|---|---|")
    print("\n".join(threads), "\n")
    print(f"| batches of {args.batch_size} rows run as | calls | rows/s (median) | min-max |\n|---|---|---|---|")
    print("\n".join(splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
