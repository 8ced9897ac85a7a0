"""Benchmark 4: adapter churn: cold loads, and a working set larger than the cache budget.

* Cold load of one set: ``AdapterSet.load`` + registration in this process, and the server's admin
  ``POST /adapters/{id}/load`` on a server that has never seen the set (read, hash, parse, register).
* Churn: a store of 16 sets (4 per task, none a default so nothing is pinned) and a request stream
  that picks one of the 16 uniformly. Two servers with the same stream: the cache budget holds all
  16 (``all resident``), or only 8 sets' bytes (``ELP_ADAPTER_CACHE_BYTES``), so about half the
  requests miss and load their set from disk, evicting the least recently used one.
  Graceful = every request answered, latency grows by about one load per miss, no errors.

    python -m benchmarks.churn --quick [--backbone wavlm-base-plus]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    BENCHMARK_API_KEY,
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    free_port,
    markdown_table,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
    write_results,
)
from benchmarks.loadgen import run_load
from elp.tasks import TASKS as REGISTERED_TASKS

WORKING_SET = 16
CACHED_SETS = 8
ENDPOINT_OF = {spec.name: spec.endpoint for spec in REGISTERED_TASKS}


def churn_sets() -> dict[str, str]:
    return {f"{task}-{i:02d}": task for task in ENDPOINT_OF for i in range(WORKING_SET // 4)}


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def in_process_cold_load(backbone: Path, folder: Path, repeats: int) -> float:
    """Median seconds for AdapterSet.load + add_adapter_set (backbone already loaded)."""
    from elp import AdapterSet, MultiAdapterModel, load_backbone

    model = MultiAdapterModel(load_backbone(str(backbone)))
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        model.add_adapter_set(f"k{index}", AdapterSet.load(folder))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def server_cold_loads(base: str, ids: list[str]) -> list[float]:
    times = []
    with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": BENCHMARK_API_KEY}) as client:
        for adapter_id in ids:
            started = time.perf_counter()
            client.post(f"/adapters/{adapter_id}/load").raise_for_status()
            times.append(time.perf_counter() - started)
    return times


def churn_point(label: str, backbone: Path, store: Path, budget: int | None, clips: list, requests: int,
                concurrency: int, device: str, seed: int) -> dict[str, Any]:
    port = free_port()
    extra = ["--adapter-cache-bytes", str(budget)] if budget is not None else []
    base = f"http://127.0.0.1:{port}"
    ids = sorted(churn_sets())
    with started_processes([(server_command(backbone, store, port, device, *extra), {}, port)]):
        cold = server_cold_loads(base, ids[:1])
        if budget is None:
            server_cold_loads(base, ids)  # all resident before traffic
        before = httpx.get(f"{base}/metrics").text

        def adapter_for(task: str, rng: random.Random) -> str:
            return f"{ {'verify': 'verification'}.get(task, task)}-{rng.randrange(WORKING_SET // 4):02d}"

        result = asyncio.run(run_load(lambda task: base, clips, concurrency=concurrency, total_requests=requests,
                                      adapter_for=adapter_for, seed=seed))
        after = httpx.get(f"{base}/metrics").text
    loads = metric(after, "elp_adapter_loads_total") - metric(before, "elp_adapter_loads_total")
    summary = result.summary()
    return {"cache": label, **{k: summary[k] for k in ("requests", "errors", "req_per_s", "p50_ms", "p95_ms",
                                                       "p99_ms")},
            "loads_during_run": int(loads), "miss_rate": round(loads / max(1, requests), 2),
            "server_cold_load_ms": round(cold[0] * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=None, help="default 48 (quick) or 160")
    args = parser.parse_args(argv)
    requests = args.requests or (48 if args.quick else 160)
    clips = corpus_clips(24, seed=args.seed, min_s=1.0, max_s=4.0)  # short clips: the load cost shows
    with workdir_for(args, f"churn-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", churn_sets(), seed=args.seed)
        set_bytes = max((store / i / "adapter_model.safetensors").stat().st_size for i in churn_sets())
        cold_in_process = in_process_cold_load(backbone, store / sorted(churn_sets())[0], repeats=5)
        rows = [
            churn_point(f"all {WORKING_SET} resident", backbone, store, None, clips, requests, args.concurrency,
                        args.device, args.seed),
            # budget: 8 sets' tensor bytes (file bytes include a small header, so this holds 8, not 9)
            churn_point(f"budget {CACHED_SETS} of {WORKING_SET}", backbone, store, CACHED_SETS * set_bytes, clips,
                        requests, args.concurrency, args.device, args.seed),
        ]
    resident = rows[0]
    for row in rows:
        row["p50_vs_resident"] = round(row["p50_ms"] / resident["p50_ms"], 2)
        row["p95_vs_resident"] = round(row["p95_ms"] / resident["p95_ms"], 2)
    title = (f"adapter churn, backbone {backbone_label(args.backbone)}, device {args.device}: {WORKING_SET} sets of "
             f"{set_bytes / 1e6:.2f} MB, uniform over sets, concurrency {args.concurrency}, clips 1-4 s; cold load "
             f"in-process (AdapterSet.load + register) {cold_in_process * 1000:.1f} ms")
    columns = ["cache", "requests", "errors", "req_per_s", "p50_ms", "p95_ms", "p99_ms", "p50_vs_resident",
               "p95_vs_resident", "loads_during_run", "miss_rate", "server_cold_load_ms"]
    write_results(f"churn-{backbone_label(args.backbone)}",
                  {"title": title, "rows": rows, "cold_load_in_process_s": cold_in_process, "set_bytes": set_bytes},
                  f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
