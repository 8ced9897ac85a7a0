"""Benchmark 1: throughput and latency of a mixed four-task stream, this server vs the alternatives.

Systems, all started at once as real processes and driven by the same closed-loop load generator
(the project's async client) with the same seeded request plan, interleaved: each of ``--repeats``
rounds runs every concurrency, and at each concurrency every system in turn, a different one first
each round. Reported: the median of the rounds with min-max, a table of ratios, a PNG of req/s and
p95 against concurrency, and the load average at the start and end (the machine may be shared).

* ``elp``: one ``python -m server`` holding one backbone and the four task adapter sets, batching
  across tasks.
* ``elp_1w`` / ``elp_2w``: the same server with ``--model-workers 1`` / ``2``: one or two batch workers
  over the one model (on a CPU sharing the intra-op threads: all for a batch running alone, half each
  while two run). ``elp``'s default is auto: two on a CPU with 2+ cores, one on a GPU.
* ``elp_length`` / ``elp_cost``: the same server with the length or the cost-aware batch policy
  (``--batch-policy``; ``length`` is the default).
* ``elp_int8``: the same server with the int8 encoder (``--dtype int8``, CPU).
* ``elp_gathered``: the same server with gathered E-adapter routing (``--adapter-routing gathered``).
* ``elp_shipped``: the same server on the shipped sets (``adapters_store``) instead of random ones: what a user's
  default server does, with the ASR second pass where ``auto`` runs it, verification's converted voice networks and
  intent's text branch (needs ``--backbone whisper-base``, the embedded checkpoint they were trained on); a
  ``--variant`` named ``elp_shipped_*`` serves them too.
* ``per_task``: four ``python -m server`` processes, one per task, each with its *own* backbone copy
  (same architecture, weights perturbed by N(0, 1e-3): how a per-task fully fine-tuned model is
  emulated) and only that task's set. Requests are routed to the process of their task.
* ``naive``: ``benchmarks/baselines/naive_hf_app.py``: the plain ``transformers`` encoder called per
  request without batching (for Whisper: 30 s padded input, as ``WhisperEncoder`` requires).

Adapter sets are random (``elp.testing.make_random_adapter_set``) but in ``elp_shipped``: answers are meaningless but
the compute is real. Peak RSS is summed over each system's process trees (psutil).

    python -m benchmarks.throughput --quick [--backbone wavlm-base-plus] [--device cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_IDS,
    MIB,
    REPO_ROOT,
    RESULTS_DIR,
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    default_sets,
    free_port,
    markdown_table,
    perturbed_backbone_copy,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
    write_results,
)
from benchmarks.loadgen import TASKS, run_load
from benchmarks.process_tree import PeakRssSampler
from benchmarks.stats import load_note, machine_load, median_rows, plot_points, ratio_table, round_robin
from elp.tasks import set_tasks

SYSTEMS = ("elp", "elp_1w", "elp_2w", "elp_cost", "elp_length", "elp_int8", "elp_gathered", "elp_shipped", "per_task",
           "naive")
SHIPPED_STORE = REPO_ROOT / "adapters_store"
#: extra server flags per ELP system: ``elp_1w`` / ``elp_2w`` one / two batch workers over the one model,
#: ``elp_cost`` / ``elp_length`` either batch policy (``length`` is the default), ``elp_int8`` the int8 encoder (CPU),
#: ``elp_gathered`` the gathered E-adapter routing
SYSTEM_SERVER_ARGS = {"elp": [], "elp_1w": ["--model-workers", "1"], "elp_2w": ["--model-workers", "2"],
                      "elp_cost": ["--batch-policy", "cost"], "elp_length": ["--batch-policy", "length"],
                      "elp_int8": ["--dtype", "int8"], "elp_gathered": ["--adapter-routing", "gathered"]}


def requests_for(concurrency: int, quick: bool, override: int | None) -> int:
    """Requests per point for a run whose highest concurrency is ``concurrency``: every point of the run
    sends this many (the same plan), so c64/c16 compares the same work. At least one per worker; by
    default two, so the highest point is not one burst whose ramp and tail dominate; fewer when quick."""
    if override is not None:
        return max(override, concurrency)
    return max(8, concurrency) if quick else max(40, 2 * concurrency)


def parse_variants(specs: list[str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """``--variant NAME=TOKENS``: an ELP server system of its own, with the flags among TOKENS
    (``--torch-threads 1``) and the environment entries (``OMP_WAIT_POLICY=PASSIVE``)."""
    variants = {}
    for spec in specs:
        name, _, tokens = spec.partition("=")
        flags, env = [], {}
        for token in tokens.split():
            if not token.startswith("-") and "=" in token:
                key, _, value = token.partition("=")
                env[key] = value
            else:
                flags.append(token)
        variants[name] = (flags, env)
    return variants


def system_commands(system: str, backbone: Path, workdir: Path, device: str, extra_server_args: list[str],
                    variants: dict[str, tuple[list[str], dict[str, str]]] | None = None
                    ) -> tuple[list[tuple[list[str], dict[str, str], int]], dict[str, int]]:
    """(process commands, task -> port) for one system."""
    variants = variants or {}
    if system.startswith("elp_shipped"):  # a variant named elp_shipped_* serves the shipped sets too
        if backbone.resolve() != prepare_backbone("whisper-base", workdir).resolve():
            raise SystemExit("elp_shipped serves the shipped sets: run it with --backbone whisper-base")
        flags, env = variants.get(system, ([], {}))
        port = free_port()
        argv = server_command(backbone, SHIPPED_STORE, port, device, *flags, *extra_server_args,
                              speakers_dir=workdir / f"speakers-shipped-{port}")  # not beside the repo's store
        return [(argv, env, port)], dict.fromkeys(TASKS, port)
    if system in SYSTEM_SERVER_ARGS or system in variants:
        flags, env = variants.get(system, (SYSTEM_SERVER_ARGS.get(system, []), {}))
        store = build_random_store(backbone, workdir / "store-elp", default_sets())
        port = free_port()
        argv = server_command(backbone, store, port, device, *flags, *extra_server_args)
        return [(argv, env, port)], dict.fromkeys(TASKS, port)
    if system == "per_task":
        commands, ports = [], {}
        for index, (endpoint, task) in enumerate((spec.endpoint, spec.name) for spec in set_tasks()):
            own_backbone = perturbed_backbone_copy(backbone, workdir / f"backbone-{task}", seed=100 + index)
            store = build_random_store(own_backbone, workdir / f"store-{task}", {DEFAULT_IDS[task]: task})
            port = free_port()
            commands.append((server_command(own_backbone, store, port, device, *extra_server_args), {}, port))
            ports[endpoint] = port
        return commands, ports
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.baselines.naive_hf_app", "--backbone", str(backbone),
            "--port", str(port), "--device", device]
    return [(argv, {}, port)], dict.fromkeys(TASKS, port)


def start_systems(stack: contextlib.ExitStack, systems: list[str], backbone: Path, workdir: Path,
                  args: argparse.Namespace) -> dict[str, tuple[list, dict[str, int]]]:
    """Every system up at once (idle ones cost memory, not CPU), so points can interleave."""
    started = {}
    for system in systems:
        print(f"{system}: starting", flush=True)
        commands, ports = system_commands(system, backbone, workdir, args.device, args.server_arg,
                                          parse_variants(args.variant))
        started[system] = (stack.enter_context(started_processes(commands)), ports)
    return started


def run_point(system: str, processes: list, ports: dict[str, int], clips: list, concurrency: int,
              total: int, seed: int, repeat: int) -> dict[str, Any]:
    def route(task: str) -> str:
        return f"http://127.0.0.1:{ports[task]}"

    with PeakRssSampler([p.pid for p in processes]) as memory:
        result = asyncio.run(run_load(route, clips, concurrency=concurrency, total_requests=total, seed=seed))
    row = {"system": system, "repeat": repeat, **result.summary(), "peak_rss_mib": round(memory.peak / MIB, 1),
           "processes": len(processes), "loadavg_1m": os.getloadavg()[0]}
    print(f"  #{repeat} {system:11s} c={concurrency:3d}: {row['req_per_s']:.2f} req/s, p50 {row['p50_ms']} ms, "
          f"p95 {row['p95_ms']} ms, {row['peak_rss_mib']} MiB, load {row['loadavg_1m']:.1f}, "
          f"outcomes {row['outcomes']}", flush=True)
    return row


def run_interleaved(systems: list[str], backbone: Path, workdir: Path, args: argparse.Namespace,
                    clips: list) -> list[dict[str, Any]]:
    """Each repeat runs every concurrency, and at each concurrency every system in turn (round-robin,
    a different system first each time), on the same seeded request plan (a new one each repeat)."""
    runs = []
    with contextlib.ExitStack() as stack:
        started = start_systems(stack, systems, backbone, workdir, args)
        for system in systems:  # warm-up: first-call allocations, lazy imports
            ports = started[system][1]
            asyncio.run(run_load(lambda task, ports=ports: f"http://127.0.0.1:{ports[task]}", clips,
                                 concurrency=4, total_requests=8, seed=999))
        for repeat in range(args.repeats):
            total = requests_for(max(args.concurrency), args.quick, args.requests)
            for level_index, concurrency in enumerate(args.concurrency):
                for system in round_robin(systems, repeat + level_index):
                    processes, ports = started[system]
                    # one plan per repeat, the same at every concurrency: c16/c1 compares the same requests
                    runs.append(run_point(system, processes, ports, clips, concurrency, total,
                                          args.seed + 1000 * repeat, repeat))
    return runs


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ELP's median req/s relative to each system at the same concurrency (``elp_speedup``), and each
    system's relative to the naive baseline (``vs_naive``)."""
    elp = {row["concurrency"]: row for row in rows if row["system"] == "elp"}
    naive = {row["concurrency"]: row for row in rows if row["system"] == "naive"}
    for row in rows:
        baseline = naive.get(row["concurrency"])
        if baseline is not None and baseline["req_per_s"]:
            row["vs_naive"] = round(row["req_per_s"] / baseline["req_per_s"], 2)
        reference = elp.get(row["concurrency"])
        if reference is not None and row["req_per_s"]:
            row["elp_speedup"] = round(reference["req_per_s"] / row["req_per_s"], 2)


METRICS = ("req_per_s", "rows_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "peak_rss_mib", "client_cpu_ms_per_req")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS),
                        help=f"of {', '.join(SYSTEMS)} and the --variant names")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=TOKENS: one more ELP server system, e.g. 'elp_1t=--torch-threads 1' or "
                             "'elp_passive=OMP_WAIT_POLICY=PASSIVE' (flags and environment entries)")
    parser.add_argument("--requests", type=int, default=None, help="requests per point, the same at every concurrency "
                             "(at least the highest; default by --quick)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians and min-max reported")
    parser.add_argument("--clips", type=int, default=48, help="distinct clips (1-10 s) in the stream")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra flag for the ELP server processes, e.g. --server-arg=--max-batch-size=8")
    args = parser.parse_args(argv)
    unknown = set(args.systems) - set(SYSTEMS) - set(parse_variants(args.variant))
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}: choose from {SYSTEMS} or name a --variant")
    clips = corpus_clips(args.clips, seed=args.seed)
    load_at_start = machine_load()
    with workdir_for(args, f"throughput-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        runs = run_interleaved(list(args.systems), backbone, workdir, args, clips)
    load_at_end = machine_load()
    rows = median_rows(runs, ("system", "concurrency"), METRICS)
    rows.sort(key=lambda row: (args.systems.index(row["system"]), row["concurrency"]))
    add_ratios(rows)
    ratios = ratio_table(rows, ("naive", "elp_length", "per_task"))
    name = f"throughput-{backbone_label(args.backbone)}"
    columns = ["system", "concurrency", "repeats", "req_per_s", "req_per_s_min", "req_per_s_max", "p50_ms",
               "p95_ms", "p95_ms_min", "p95_ms_max", "errors", "peak_rss_mib", "client_cpu_ms_per_req", "elp_speedup",
               "vs_naive"]
    title = (f"throughput, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"clips {min(c.duration_s for c in clips):.1f}-{max(c.duration_s for c in clips):.1f} s, mixed 4 tasks, "
             f"{args.repeats} interleaved repeats (median, min-max)")
    plot = plot_points(rows, RESULTS_DIR / f"{name}.png", f"{title}\n{load_note(load_at_start, load_at_end)}")
    ratio_columns = list(dict.fromkeys(key for row in ratios for key in row))
    table = (f"{title}\n{load_note(load_at_start, load_at_end)}\n\n" + markdown_table(rows, columns)
             + "\n\nratios of median req/s\n\n" + markdown_table(ratios, ratio_columns))
    write_results(name, {"title": title, "load_start": load_at_start, "load_end": load_at_end, "rows": rows,
                         "ratios": ratios, "runs": runs, "plot": plot.name if plot else None}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
