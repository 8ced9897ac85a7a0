"""Benchmark 2: what serving costs on top of the model, and what mixing tasks in a batch costs.

* Raw: ``MultiAdapterModel.predict`` in this process on batches of B rows (no HTTP, no decoding),
  rows grouped by length the way the server's worker groups them. Mixed batches hold the four
  task sets; single-task batches of the same clips hold one set. ``mixed_vs_single`` = time of the
  mixed batch / mean time of the four single-task batches.
* Server: ``python -m server --max-batch-size B`` driven at saturation (concurrency 2B) with the
  same four-task mix (verify = two rows), alternating with the raw loops ``--repeats`` times
  (medians). ``served_fraction`` = server rows/s / raw rows/s *of the same rows*: the load's request
  plan (``benchmarks.loadgen.request_plan``) replayed on the raw model, each window of 2B requests
  (what the server holds queued at saturation) sorted by length and run B rows at a time
  (``raw_plan_rows_per_s``): the share of the model's batched throughput that survives HTTP,
  multipart parsing, decoding, resampling, queueing, post-processing and the load generator (which
  shares the same CPUs; ``client_cpu_ms_per_req``, and ``server_cores``: the server's CPU seconds per
  second). The raw loops run on a thread of their own, as the server's model worker does
  (``benchmarks.common.on_model_thread``: on the main thread two intra-op threads ran ~10x slower).
  ``served_vs_grouped`` is the former figure, against ``raw_mixed_rows_per_s``: those
  batches are the shortest rows of each window (``length_grouped_batches``), so it ran low.
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
    ENDPOINT_TASKS,
    Clip,
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    decode_clip,
    default_sets,
    free_port,
    markdown_table,
    on_model_thread,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
    write_results,
)
from benchmarks.loadgen import PlannedRequest, request_plan, run_load
from benchmarks.process_tree import tree_cpu_s
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


def plan_batches(plan: list[PlannedRequest], waveforms: dict[str, torch.Tensor], batch_size: int
                 ) -> list[tuple[list[torch.Tensor], list[str]]]:
    """The plan's rows as raw batches of ``batch_size``: each window of 2B requests (the server's queue
    at saturation) sorted by length, with each row's task set."""
    batches = []
    for start in range(0, len(plan), 2 * batch_size):
        rows = sorted(((waveforms[clip.name], DEFAULT_IDS[ENDPOINT_TASKS[request.task]])
                       for request in plan[start : start + 2 * batch_size] for clip in request.clips),
                      key=lambda row: len(row[0]))
        batches += [([w for w, _ in rows[i : i + batch_size]], [k for _, k in rows[i : i + batch_size]])
                    for i in range(0, len(rows), batch_size)]
    return batches


def raw_plan_point(model: Any, plan: list[PlannedRequest], waveforms: dict[str, torch.Tensor], batch_size: int,
                   device: str) -> dict[str, Any]:
    """Raw rows/s on exactly the rows the server is sent (the served fraction's reference)."""
    batches = plan_batches(plan, waveforms, batch_size)
    seconds = sum(timed_predict(model, batch, keys, device) for batch, keys in batches)
    rows = [w for batch, _ in batches for w in batch]
    return {"raw_plan_rows_per_s": round(len(rows) / seconds, 3),
            "plan_mean_row_s": round(sum(len(w) for w in rows) / len(rows) / 16000, 2)}


def server_load(port: int, pid: int, clips: list[Clip], batch_size: int, requests: int, seed: int
                ) -> dict[str, Any]:
    def route(task: str) -> str:
        return f"http://127.0.0.1:{port}"

    cpu_before = tree_cpu_s([pid])
    result = asyncio.run(run_load(route, clips, concurrency=2 * batch_size, total_requests=requests, seed=seed))
    summary = result.summary()
    return {"server_rows_per_s": summary["rows_per_s"], "server_req_per_s": summary["req_per_s"],
            "server_p50_ms": summary["p50_ms"], "server_errors": summary["errors"],
            "server_cores": round((tree_cpu_s([pid]) - cpu_before) / result.elapsed_s, 2),
            "client_cpu_ms_per_req": summary["client_cpu_ms_per_req"]}


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
    waveform_of = {clip.name: waveform for clip, waveform in zip(clips, waveforms, strict=True)}
    with started_processes(commands) as processes:
        pids = {policy: process.pid for policy, process in zip(ports, processes, strict=True)}
        for port in ports.values():
            asyncio.run(run_load(lambda task, port=port: f"http://127.0.0.1:{port}", clips, concurrency=4,
                                 total_requests=8, seed=999))
        for repeat in range(args.repeats):
            raw = {"repeat": repeat, **on_model_thread(raw_point, model, waveforms, batch_size, repeats, args.device,
                                                         args.seed + repeat)}
            requests = max(16, 4 * batch_size)
            plan = request_plan(clips, requests, seed=args.seed + repeat)  # what server_load sends
            raw.update(on_model_thread(raw_plan_point, model, plan, waveform_of, batch_size, args.device))
            for policy in round_robin(policies, repeat):
                run = {"batch_policy": policy or "server default", **raw,
                       **server_load(ports[policy], pids[policy], clips, batch_size, requests, args.seed + repeat)}
                run["served_fraction"] = round(run["server_rows_per_s"] / run["raw_plan_rows_per_s"], 3)
                run["served_vs_grouped"] = round(run["server_rows_per_s"] / run["raw_mixed_rows_per_s"], 3)
                print(f"  #{repeat} B={batch_size} {run['batch_policy']}: raw {run['raw_plan_rows_per_s']} rows/s "
                      f"(shortest-first {run['raw_mixed_rows_per_s']}), server {run['server_rows_per_s']} rows/s, "
                      f"served {run['served_fraction']}, server {run.get('server_cores')} cores", flush=True)
                runs.append(run)
    return runs


METRICS = ("raw_mixed_rows_per_s", "raw_single_rows_per_s", "mixed_vs_single", "gathered_vs_per_group",
           "ops_gathered", "ops_per_group", "shared_ep_vs_distinct", "raw_plan_rows_per_s", "plan_mean_row_s",
           "server_rows_per_s", "server_req_per_s", "served_fraction", "served_vs_grouped", "server_cores",
           "client_cpu_ms_per_req", "server_errors")


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
               "mixed_vs_single", "gathered_vs_per_group", "ops_gathered", "ops_per_group", "shared_ep_vs_distinct",
               "raw_plan_rows_per_s", "plan_mean_row_s", "server_rows_per_s", "served_fraction",
               "served_fraction_min", "served_fraction_max", "served_vs_grouped", "server_cores",
               "client_cpu_ms_per_req", "server_errors"]
    title = (f"serving overhead, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"median of {args.repeats} raw/server alternations (min-max for served_fraction)")
    write_results(f"overhead-{backbone_label(args.backbone)}",
                  {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows, "runs": runs},
                  f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
