"""Benchmark 1: throughput and latency of a mixed four-task stream, this server vs the alternatives.

Systems, each started fresh as real processes and driven by the same closed-loop load generator
(the project's async client) with the same seeded request plan:

* ``elp``: one ``python -m server`` holding one backbone and the four task adapter sets, batching
  across tasks.
* ``elp_2w``: the same server with ``--model-workers 2``: two batch workers over the one model
  (on a CPU each with half the intra-op threads).
* ``per_task``: four ``python -m server`` processes, one per task, each with its *own* backbone copy
  (same architecture, weights perturbed by N(0, 1e-3): how a per-task fully fine-tuned model is
  emulated) and only that task's set. Requests are routed to the process of their task.
* ``naive``: ``benchmarks/baselines/naive_hf_app.py``: the plain ``transformers`` encoder called per
  request without batching (for Whisper: 30 s padded input, as ``WhisperEncoder`` requires).

Adapter sets are random (``elp.testing.make_random_adapter_set``): answers are meaningless but the
compute is real. Peak RSS is summed over each system's process trees (psutil).

    python -m benchmarks.throughput --quick [--backbone wavlm-base-plus] [--device cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_IDS,
    MIB,
    PeakRssSampler,
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
from elp.tasks import TASKS as REGISTERED_TASKS

SYSTEMS = ("elp", "elp_2w", "per_task", "naive")
#: extra server flags per ELP system: ``elp_2w`` runs two batch workers over the one model
SYSTEM_SERVER_ARGS = {"elp": [], "elp_2w": ["--model-workers", "2"]}


def requests_for(concurrency: int, quick: bool, override: int | None) -> int:
    """Enough requests that every worker sends a few; fewer at high concurrency when quick."""
    if override is not None:
        return max(override, concurrency)
    return max(8, concurrency) if quick else max(40, 2 * concurrency)


def system_commands(system: str, backbone: Path, workdir: Path, device: str,
                    extra_server_args: list[str]) -> tuple[list[tuple[list[str], dict[str, str], int]], dict[str, int]]:
    """(process commands, task -> port) for one system."""
    if system in SYSTEM_SERVER_ARGS:
        store = build_random_store(backbone, workdir / "store-elp", default_sets())
        port = free_port()
        argv = server_command(backbone, store, port, device, *SYSTEM_SERVER_ARGS[system], *extra_server_args)
        return [(argv, {}, port)], dict.fromkeys(TASKS, port)
    if system == "per_task":
        commands, ports = [], {}
        for index, (endpoint, task) in enumerate((spec.endpoint, spec.name) for spec in REGISTERED_TASKS):
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


def run_system(system: str, backbone: Path, workdir: Path, args: argparse.Namespace, clips: list) -> list[dict]:
    commands, ports = system_commands(system, backbone, workdir, args.device, args.server_arg)
    rows = []
    with started_processes(commands) as processes:
        def route(task: str) -> str:
            return f"http://127.0.0.1:{ports[task]}"

        # warm-up: one request per task (first-call allocations, lazy imports)
        asyncio.run(run_load(route, clips, concurrency=4, total_requests=8, seed=999))
        for concurrency in args.concurrency:
            total = requests_for(concurrency, args.quick, args.requests)
            with PeakRssSampler([p.pid for p in processes]) as memory:
                result = asyncio.run(run_load(route, clips, concurrency=concurrency, total_requests=total,
                                              seed=args.seed + concurrency))
            row = {"system": system, **result.summary(), "peak_rss_mib": round(memory.peak / MIB, 1),
                   "processes": len(processes)}
            print(f"  {system:9s} c={concurrency:3d}: {row['req_per_s']:.2f} req/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, {row['peak_rss_mib']} MiB, outcomes {row['outcomes']}", flush=True)
            rows.append(row)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ELP's req/s and peak RSS relative to each system at the same concurrency (same run), and each
    system's req/s relative to the naive baseline."""
    elp = {row["concurrency"]: row for row in rows if row["system"] == "elp"}
    naive = {row["concurrency"]: row for row in rows if row["system"] == "naive"}
    for row in rows:
        baseline = naive.get(row["concurrency"])
        if baseline is not None and baseline["req_per_s"]:
            row["vs_naive"] = round(row["req_per_s"] / baseline["req_per_s"], 2)
        reference = elp.get(row["concurrency"])
        if reference is None or not row["req_per_s"]:
            continue
        row["elp_speedup"] = round(reference["req_per_s"] / row["req_per_s"], 2)
        row["elp_memory_ratio"] = round(reference["peak_rss_mib"] / row["peak_rss_mib"], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--requests", type=int, default=None, help="requests per point (default by --quick)")
    parser.add_argument("--clips", type=int, default=48, help="distinct clips (1-10 s) in the stream")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra flag for the ELP server processes, e.g. --server-arg=--max-batch-size=8")
    args = parser.parse_args(argv)
    clips = corpus_clips(args.clips, seed=args.seed)
    with workdir_for(args, f"throughput-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        rows: list[dict[str, Any]] = []
        for system in args.systems:
            print(f"{system}: starting", flush=True)
            rows += run_system(system, backbone, workdir, args, clips)
    add_ratios(rows)
    columns = ["system", "concurrency", "requests", "errors", "req_per_s", "p50_ms", "p95_ms", "p99_ms",
               "peak_rss_mib", "processes", "elp_speedup", "elp_memory_ratio", "vs_naive"]
    title = (f"throughput, backbone {backbone_label(args.backbone)}, device {args.device}, "
             f"clips {min(c.duration_s for c in clips):.1f}-{max(c.duration_s for c in clips):.1f} s, mixed 4 tasks")
    write_results(f"throughput-{backbone_label(args.backbone)}", {"title": title, "rows": rows},
                  f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
