"""Benchmark 2: what serving costs on top of the model, and what mixing tasks in a batch costs.

* Raw: ``MultiAdapterModel.predict`` in this process on batches of B rows (no HTTP, no decoding),
  rows grouped by length the way the server's worker groups them. Mixed batches hold the four
  task sets; single-task batches of the same clips hold one set. ``mixed_vs_single`` = time of the
  mixed batch / mean time of the four single-task batches.
* Server: ``python -m server --max-batch-size B`` driven at saturation (concurrency 2B) with the
  same four-task mix (verify = two rows), alternating with the raw loop ``--repeats`` times
  (medians). ``served_fraction`` = server rows/s / raw mixed rows/s:
  the share of the model's batched throughput that survives HTTP, multipart parsing, decoding,
  resampling, queueing and the load generator itself (which shares the same CPUs).
  ``--batch-policies cost length`` starts one server per batch policy and runs them in turn after
  each raw loop (a different one first each repeat), so the policies share the raw figure and the load.
* Routing: the mixed batch again with the E-adapters routed per group and gathered (one batched
  matmul over every row's own weights); ``gathered_vs_per_group`` = time gathered / time per group.
  The other columns use the server's default routing (per group).
  ``ops_*``: operators one mixed ``predict`` dispatches under each routing (aten operators on a CPU,
  kernels on a GPU): what a launch-bound GPU pays for one by one.
* Shared E/P: half ASR, half intent rows, once with an intent set that has its own E/P adapters and
  once with one that carries the ASR set's (as the shipped intent set does): the model routes the
  latter as one group. ``shared_ep_vs_distinct`` = time with shared / time with distinct adapters.

    python -m benchmarks.overhead --quick [--batch-sizes 1 4 8 16] [--device cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    DEFAULT_IDS,
    Clip,
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    decode_clip,
    default_sets,
    free_port,
    markdown_table,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
    write_results,
)
from benchmarks.loadgen import run_load
from benchmarks.stats import load_note, machine_load, median_rows, round_robin

TASK_KEYS = tuple(DEFAULT_IDS.values())
#: the intent set again, but on the ASR set's E- and P-adapters
SHARED_INTENT_KEY = "intent-on-asr-adapters"


def load_model(backbone: Path, store: Path, device: str) -> Any:
    from elp import AdapterSet, MultiAdapterModel, load_backbone

    model = MultiAdapterModel(load_backbone(str(backbone), device=device)).eval()
    for adapter_id in TASK_KEYS:
        model.add_adapter_set(adapter_id, AdapterSet.load(store / adapter_id, device=device))
    shared = AdapterSet.load(store / DEFAULT_IDS["intent"], device=device)
    shared.load_state_dict(model.adapter_sets[DEFAULT_IDS["asr"]].backbone_change_state(), strict=False)
    model.add_adapter_set(SHARED_INTENT_KEY, shared)
    return model


def length_grouped_batches(waveforms: list[torch.Tensor], batch_size: int) -> list[list[torch.Tensor]]:
    """Batches of ``batch_size`` rows, each sorted window of 4 batches split in order (as the worker does)."""
    batches = []
    window = 4 * batch_size
    for start in range(0, len(waveforms), window):
        chunk = sorted(waveforms[start : start + window], key=len)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [b for b in batches if len(b) == batch_size]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_predict(model: Any, batch: list[torch.Tensor], keys: list[str], device: str) -> float:
    sync(device)
    started = time.perf_counter()
    model.predict(batch, keys)
    sync(device)
    return time.perf_counter() - started


def operators_dispatched(work: Callable[[], Any], device: str) -> int:
    """Operators one call of ``work`` dispatches: aten operators on a CPU, kernels on a GPU (what a
    launch-bound GPU pays for one by one)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        work()
        sync(device)
    if device.startswith("cuda"):
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def operator_count(model: Any, batch: list[torch.Tensor], keys: list[str], device: str) -> int:
    """Operators one ``predict`` of ``batch`` dispatches (:func:`operators_dispatched`)."""
    return operators_dispatched(lambda: timed_predict(model, batch, keys, device), device)


def raw_point(model: Any, waveforms: list[torch.Tensor], batch_size: int, repeats: int, device: str,
              seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    batches = length_grouped_batches(waveforms, batch_size)[:repeats]
    timed_predict(model, batches[0], [TASK_KEYS[0]] * batch_size, device)  # warm-up at this shape
    mixed, single, distinct, shared = [], [], [], []
    routed: dict[bool, list[float]] = {True: [], False: []}
    default_routing = model.gathered_routing
    for batch in batches:
        keys = [TASK_KEYS[i % 4] for i in range(batch_size)]
        rng.shuffle(keys)
        for gathered in (True, False):  # the same mixed batch under both E-adapter routings
            model.gathered_routing = gathered
            routed[gathered].append(timed_predict(model, batch, keys, device))
        model.gathered_routing = default_routing
        mixed.append(routed[default_routing][-1])  # the server's routing: already timed
        single.append(statistics.mean(timed_predict(model, batch, [key] * batch_size, device) for key in TASK_KEYS))
        if batch_size > 1:
            halves = [DEFAULT_IDS["asr"] if i % 2 else DEFAULT_IDS["intent"] for i in range(batch_size)]
            distinct.append(timed_predict(model, batch, halves, device))
            halves = [DEFAULT_IDS["asr"] if i % 2 else SHARED_INTENT_KEY for i in range(batch_size)]
            shared.append(timed_predict(model, batch, halves, device))
    counts = {}
    for gathered in (True, False):
        model.gathered_routing = gathered
        counts[gathered] = operator_count(model, batches[0], keys, device)
    model.gathered_routing = default_routing
    rows = batch_size * len(batches)
    return {"batch_size": batch_size, "batches": len(batches),
            "raw_mixed_rows_per_s": round(rows / sum(mixed), 3),
            "raw_single_rows_per_s": round(rows / sum(single), 3),
            "mixed_vs_single": round(sum(mixed) / sum(single), 3),
            "gathered_vs_per_group": round(sum(routed[True]) / sum(routed[False]), 3),
            "ops_gathered": counts[True], "ops_per_group": counts[False],
            "shared_ep_vs_distinct": round(sum(shared) / sum(distinct), 3) if distinct else None}


def server_load(port: int, clips: list[Clip], batch_size: int, requests: int, seed: int) -> dict[str, Any]:
    def route(task: str) -> str:
        return f"http://127.0.0.1:{port}"

    summary = asyncio.run(run_load(route, clips, concurrency=2 * batch_size, total_requests=requests,
                                   seed=seed)).summary()
    return {"server_rows_per_s": summary["rows_per_s"], "server_req_per_s": summary["req_per_s"],
            "server_p50_ms": summary["p50_ms"], "server_errors": summary["errors"]}


def interleaved_points(model: Any, waveforms: list[torch.Tensor], backbone: Path, store: Path, clips: list[Clip],
                       batch_size: int, args: argparse.Namespace, repeats: int) -> list[dict[str, Any]]:
    """Raw and served throughput of one batch size, alternating ``--repeats`` times (the servers idle
    while the raw loop runs and the other way round), so all see the same background load. One server
    per ``--batch-policies`` entry, taken in turn after each raw loop."""
    policies: list[str] = args.batch_policies or [""]  # "": the server's default
    ports = {policy: free_port() for policy in policies}
    commands = [(server_command(backbone, store, port, args.device, "--max-batch-size", str(batch_size),
                                "--max-queue", "1024", *(["--batch-policy", policy] if policy else []),
                                *args.server_arg), {}, port) for policy, port in ports.items()]
    runs = []
    with started_processes(commands):
        for port in ports.values():
            asyncio.run(run_load(lambda task, port=port: f"http://127.0.0.1:{port}", clips, concurrency=4,
                                 total_requests=8, seed=999))
        for repeat in range(args.repeats):
            raw = {"repeat": repeat, **raw_point(model, waveforms, batch_size, repeats, args.device,
                                                 args.seed + repeat)}
            requests = max(8, (repeats + 1) * batch_size)
            for policy in round_robin(policies, repeat):
                run = {"batch_policy": policy or "server default", **raw,
                       **server_load(ports[policy], clips, batch_size, requests, args.seed + repeat)}
                run["served_fraction"] = round(run["server_rows_per_s"] / run["raw_mixed_rows_per_s"], 3)
                print(f"  #{repeat} B={batch_size} {run['batch_policy']}: raw {run['raw_mixed_rows_per_s']} rows/s, "
                      f"server {run['server_rows_per_s']} rows/s, served {run['served_fraction']}", flush=True)
                runs.append(run)
    return runs


METRICS = ("raw_mixed_rows_per_s", "raw_single_rows_per_s", "mixed_vs_single", "gathered_vs_per_group",
           "ops_gathered", "ops_per_group", "shared_ep_vs_distinct", "server_rows_per_s", "server_req_per_s",
           "served_fraction", "server_errors")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 8 (quick), 1 4 8 16")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="raw/server alternations per batch size")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for the server")
    parser.add_argument("--batch-policies", nargs="+", choices=("cost", "length"), default=None,
                        help="one server per batch policy, interleaved (default: the server's own)")
    args = parser.parse_args(argv)
    batch_sizes = args.batch_sizes or ([1, 8] if args.quick else [1, 4, 8, 16])
    batches_per_point = 2 if args.quick else 4
    clips = corpus_clips(args.clips, seed=args.seed)
    waveforms = [torch.from_numpy(decode_clip(c.data)) for c in clips]
    load_at_start = machine_load()
    runs = []
    with workdir_for(args, f"overhead-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", default_sets())
        model = load_model(backbone, store, args.device)
        for batch_size in batch_sizes:
            runs += interleaved_points(model, waveforms, backbone, store, clips, batch_size, args,
                                       batches_per_point)
    load_at_end = machine_load()
    rows = median_rows(runs, ("batch_policy", "batch_size"), METRICS)
    rows.sort(key=lambda row: (row["batch_policy"], row["batch_size"]))
    columns = ["batch_policy", "batch_size", "repeats", "raw_mixed_rows_per_s", "raw_single_rows_per_s",
               "mixed_vs_single",
               "gathered_vs_per_group", "ops_gathered", "ops_per_group", "shared_ep_vs_distinct",
               "server_rows_per_s", "served_fraction", "served_fraction_min", "served_fraction_max", "server_errors"]
    title = (f"serving overhead, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"median of {args.repeats} raw/server alternations (min-max for served_fraction)")
    write_results(f"overhead-{backbone_label(args.backbone)}",
                  {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows, "runs": runs},
                  f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
