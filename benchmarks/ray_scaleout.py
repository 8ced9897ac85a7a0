"""Scale-out on Ray Serve (server/ray_app.py): 1 vs 2 replicas, and the cache-thrash case.

Three deployments on this machine, each measured on the same two workloads:

* the single server (``elp-server``, one process, all cores);
* Ray Serve, 1 replica with all cores;
* Ray Serve, 2 replicas with half the cores each (adapter-affinity routing).

Workloads: the mixed 4-task stream on the default sets, and the cache-thrash case: 16 sets used
uniformly with room for 8 per process (``ELP_ADAPTER_CACHE_BYTES`` = 8 sets + the 4 pinned defaults;
Ray's ``max_num_models_per_replica`` = 8), after one warm-up pass over all 16. The single server
then misses about half the time; two replicas with affinity hold 8 each, i.e. all 16. On two CPU
cores a second replica adds no compute: expect the gain to show in loads avoided, not in throughput.

    python -m benchmarks.ray_scaleout --quick --workdir /tmp/elp-benchmarks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.churn import WORKING_SET, churn_sets, metric
from benchmarks.common import (
    REPO_ROOT,
    add_common_args,
    backbone_label,
    build_random_store,
    corpus_clips,
    default_sets,
    free_port,
    markdown_table,
    percentiles_ms,
    prepare_backbone,
    server_command,
    started_processes,
    workdir_for,
    write_results,
)
from benchmarks.loadgen import run_load
from elp.tasks import get_task, task_for_endpoint

CACHED_SETS = 8
DEFAULT_COUNT = 4


@contextlib.contextmanager
def single_server(backbone: Path, store: Path, budget: int, device: str) -> Iterator[str]:
    port = free_port()
    command = server_command(backbone, store, port, device, "--adapter-cache-bytes", str(budget))
    with started_processes([(command, {}, port)]):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def ray_deployment(backbone: Path, store: Path, budget: int, device: str, replicas: int,
                   cpus: int) -> Iterator[str]:
    """A local Ray instance with ``cpus`` CPUs split evenly over ``replicas``; the ingress takes none."""
    import ray
    from ray import serve

    from server.ray_app import build_app

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        per_replica = cpus // replicas
        args = dict(backbone=str(backbone), adapters_dir=str(store), speakers_dir=str(store.parent / "speakers"),
                    device=device, log_level="warning", adapter_cache_bytes=budget, torch_threads=per_replica,
                    ray_min_replicas=replicas, ray_max_replicas=replicas, ray_replica_cpus=per_replica,
                    ray_ingress_cpus=0, ray_models_per_replica=CACHED_SETS, ray_metrics_push_s=0.5,
                    ray_replica_gpus=1 / replicas if device.startswith("cuda") else 0)
        serve.run(build_app(args), name="elp", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def loads(base: str) -> float:
    """Adapter loads so far: the server's counter, summed over replicas behind a Ray ingress (their
    reports are at most ``ray_metrics_push_s`` old: wait that long first)."""
    return metric(httpx.get(f"{base}/metrics", timeout=30).text, "elp_adapter_loads_total")


def thrash_adapter(task: str, rng: random.Random) -> str:
    return f"{task_for_endpoint(task).name}-{rng.randrange(WORKING_SET // 4):02d}"


def measure(base: str, label: str, workload: str, clips: list, requests: int, concurrency: int,
            adapter_for: Callable[[str, random.Random], str] | None, seed: int, settle_s: float) -> dict[str, Any]:
    if adapter_for is not None:  # warm-up: every set once, in order
        with httpx.Client(base_url=base, timeout=120) as client:
            for adapter_id, task in sorted(churn_sets().items()):
                spec = get_task(task)
                files = {"file": ("a.wav", clips[0].data)}
                files |= {extra.name: ("b.wav", clips[1].data) for extra in spec.extra_clips}
                client.post(spec.route, files=files, data={"adapter": adapter_id}).raise_for_status()
    time.sleep(settle_s)
    before = loads(base)
    result = asyncio.run(run_load(lambda task: base, clips, concurrency=concurrency, total_requests=requests,
                                  adapter_for=adapter_for, seed=seed))
    time.sleep(settle_s)
    during = loads(base) - before
    summary = result.summary()
    return {"deployment": label, "workload": workload,
            **{k: summary[k] for k in ("requests", "errors", "req_per_s", "p50_ms", "p95_ms")},
            "loads_during_run": int(during), "miss_rate": round(during / max(1, requests), 2)}


def routing_overhead(base: str, label: str, requests: int, concurrency: int) -> dict[str, Any]:
    """GET /healthz: no model work, so its latency is the request path itself (for Ray: proxy ->
    ingress -> replica and back) and its rate at ``concurrency`` bounds what the front end forwards."""

    async def run() -> tuple[list[float], float]:
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            async def worker(count: int) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    (await client.get("/healthz")).raise_for_status()
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
            return latencies, time.perf_counter() - started

    latencies, elapsed = asyncio.run(run())
    return {"deployment": label, "workload": f"GET /healthz (request path only), concurrency {concurrency}",
            "requests": len(latencies), "errors": 0, "req_per_s": round(len(latencies) / elapsed, 1),
            **percentiles_ms(latencies), "loads_during_run": 0, "miss_rate": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=None, help="per point; default 48 (quick) or 160")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (the single server uses all)")
    parser.add_argument("--reverse", action="store_true",
                        help="run the deployments in reverse order (on a shared machine: check for drift)")
    args = parser.parse_args(argv)
    requests = args.requests or (48 if args.quick else 160)
    clips = corpus_clips(24, seed=args.seed, min_s=1.0, max_s=4.0)
    rows = []
    with workdir_for(args, f"ray-scaleout-{backbone_label(args.backbone)}") as workdir:
        backbone = prepare_backbone(args.backbone, workdir)
        store = build_random_store(backbone, workdir / "store", {**default_sets(), **churn_sets()}, seed=args.seed)
        set_bytes = max((store / i / "adapter_model.safetensors").stat().st_size for i in churn_sets())
        budget = (CACHED_SETS + DEFAULT_COUNT) * set_bytes  # 8 sets beside the 4 pinned defaults
        deployments = [
            ("single server", lambda: single_server(backbone, store, budget, args.device), 0.0),
            ("ray, 1 replica", lambda: ray_deployment(backbone, store, budget, args.device, 1, args.cpus), 1.5),
            ("ray, 2 replicas", lambda: ray_deployment(backbone, store, budget, args.device, 2, args.cpus), 1.5),
        ]
        for label, start, settle_s in reversed(deployments) if args.reverse else deployments:
            with start() as base:
                for workload, adapter_for in (("mixed, default sets", None),
                                              (f"{WORKING_SET} sets, room for {CACHED_SETS}", thrash_adapter)):
                    rows.append(measure(base, label, workload, clips, requests, args.concurrency, adapter_for,
                                        args.seed, settle_s))
                    print(rows[-1], flush=True)
                rows.append(routing_overhead(base, label, 8 * requests, args.concurrency * 4))
                print(rows[-1], flush=True)
    title = (f"Ray Serve scale-out, backbone {backbone_label(args.backbone)}, device {args.device}, {args.cpus} CPUs "
             f"for Ray; concurrency {args.concurrency}, clips 1-4 s; cache-thrash: {WORKING_SET} sets of "
             f"{set_bytes / 1e6:.2f} MB uniform, {CACHED_SETS} per process beside {DEFAULT_COUNT} pinned defaults")
    columns = ["deployment", "workload", "requests", "errors", "req_per_s", "p50_ms", "p95_ms", "loads_during_run",
               "miss_rate"]
    write_results(f"ray-scaleout-{backbone_label(args.backbone)}", {"title": title, "rows": rows},
                  f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
