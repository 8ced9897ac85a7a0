"""Soak: mixed traffic plus adapter load/unload churn against a real server process for N minutes,
sampling its RSS, open file descriptors and threads once a second.

Leaks show as growth after warm-up: the report gives the RSS slope (least squares, MiB/min) over the
post-warm-up samples, and fd / thread counts at the start and end of that window. The traffic mixes
the four tasks, some bad uploads (error paths must not leak either) and an admin loop that loads and
drops four extra sets, so the adapter cache keeps registering and unregistering.

    python -m benchmarks.soak --minutes 10                  # whisper base, random sets
    python -m benchmarks.soak --minutes 0.5 --backbone tiny # what CI runs (tests/reliability)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import (
    BENCHMARK_API_KEY,
    MIB,
    STAND_IN_FLAGS,
    add_common_args,
    build_random_store,
    corpus_clips,
    default_sets,
    free_port,
    markdown_table,
    prepare_backbone,
    seeded_clip,
    server_command,
    started_processes,
    write_results,
)
from clients import AsyncELPClient
from clients.errors import ELPClientError
from elp.tasks import TASKS, get_task, set_task_names

#: the task whose extra sets the admin loop loads and drops (its requests also pick among them)
CHURNED_TASK = get_task("emotion")
EXTRA_SETS = {f"churn-{i}": CHURNED_TASK.name for i in range(4)}
#: sets that only the admin loop touches (load/unload without traffic racing it)
ADMIN_ONLY_SETS = {f"admin-{i}": CHURNED_TASK.name for i in range(2)}


@dataclass
class SoakReport:
    duration_s: float
    requests: int
    ok: int
    unexpected: dict[str, int]
    samples: list[dict[str, float]] = field(repr=False)
    warmup_s: float = 0.0

    def _window(self) -> list[dict[str, float]]:
        return [s for s in self.samples if s["t"] >= self.warmup_s] or self.samples

    @property
    def rss_slope_mib_per_min(self) -> float:
        window = self._window()
        if len(window) < 3:
            return 0.0
        t = np.array([s["t"] for s in window]) / 60.0
        rss = np.array([s["rss"] for s in window]) / MIB
        return float(np.polyfit(t, rss, 1)[0])

    def growth(self, key: str) -> float:
        """End-of-run level minus post-warm-up start level (medians of 3 samples, so one busy
        moment does not count as a leak)."""
        window = self._window()
        head = float(np.median([s[key] for s in window[:3]]))
        tail = float(np.median([s[key] for s in window[-3:]]))
        return tail - head

    def summary(self) -> dict[str, Any]:
        window = self._window()
        return {
            "duration_s": round(self.duration_s, 1), "requests": self.requests, "ok": self.ok,
            "unexpected": self.unexpected, "rss_start_mib": round(window[0]["rss"] / MIB, 1),
            "rss_end_mib": round(window[-1]["rss"] / MIB, 1),
            "rss_slope_mib_per_min": round(self.rss_slope_mib_per_min, 2),
            "fds_start": int(window[0]["fds"]), "fds_end": int(window[-1]["fds"]), "fd_growth": self.growth("fds"),
            "threads_start": int(window[0]["threads"]), "threads_end": int(window[-1]["threads"]),
            "thread_growth": self.growth("threads"),
        }


def sample(process: psutil.Process, started: float) -> dict[str, float]:
    return {"t": time.monotonic() - started, "rss": process.memory_info().rss, "fds": process.num_fds(),
            "threads": process.num_threads()}


async def traffic(base: str, clips: list, stop_at: float, concurrency: int, seed: int,
                  traffic_uses_churned_sets: bool = True) -> tuple[int, int, dict]:
    """Mixed requests until ``stop_at``; returns (sent, ok, unexpected outcomes). The admin loop
    loads and drops ``EXTRA_SETS`` (which emotion requests also use, so unloads race in-flight
    requests) or, with ``traffic_uses_churned_sets=False``, ``ADMIN_ONLY_SETS``."""
    churned = list(EXTRA_SETS if traffic_uses_churned_sets else ADMIN_ONLY_SETS)
    rng = random.Random(seed)
    counts = {"sent": 0, "ok": 0}
    unexpected: dict[str, int] = {}
    bad_upload = b"RIFF\x00\x00\x00\x00WAVEjunk"

    # not the tasks compared with the enrolled speakers (/identify): rate-limited per client by design; nor those
    # whose sets the made-up store cannot hold (translation's are only converted from a checkpoint)
    open_tasks = [spec for spec in TASKS if not spec.enrolled_gallery and spec.set_task in set_task_names()]

    async def worker(client: AsyncELPClient) -> None:
        while time.monotonic() < stop_at:
            spec = rng.choice([*open_tasks, None])  # None: a bad upload
            clip, reference = rng.choice(clips), rng.choice(clips)
            counts["sent"] += 1
            try:
                if spec is None:
                    try:
                        await client.task(TASKS[0].endpoint, bad_upload)
                    except ELPClientError as exc:
                        if exc.code != "invalid_audio":
                            raise
                else:
                    adapter = rng.choice([spec.default_adapter, *EXTRA_SETS]) if spec is CHURNED_TASK else None
                    extra = [reference.data] * len(spec.extra_clips)
                    await client.task(spec.endpoint, clip.data, *extra, adapter=adapter)
                counts["ok"] += 1
            except Exception as exc:
                key = f"{getattr(exc, 'status', '')} {getattr(exc, 'code', type(exc).__name__)}".strip()
                unexpected[key] = unexpected.get(key, 0) + 1

    async def churn(client: AsyncELPClient) -> None:
        while time.monotonic() < stop_at:
            adapter_id = rng.choice(churned)
            try:
                await client.load_adapter(adapter_id)
                await asyncio.sleep(0.2)
                await client.unload_adapter(adapter_id)
            except Exception as exc:
                key = f"admin {type(exc).__name__}"
                unexpected[key] = unexpected.get(key, 0) + 1
            await asyncio.sleep(0.2)

    async with AsyncELPClient(base, timeout=120, api_key=BENCHMARK_API_KEY) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)), churn(client))
    return counts["sent"], counts["ok"], unexpected


def run_soak(backbone: Path, store: Path, seconds: float, *, concurrency: int = 4, clips: list | None = None,
             warmup_fraction: float = 0.3, device: str = "cpu", seed: int = 0,
             extra_server_args: tuple[str, ...] = (), traffic_uses_churned_sets: bool = True) -> SoakReport:
    """Start a server on ``store``, soak it for ``seconds``, stop it, and report."""
    if clips is None:  # seeded stand-ins: no voice for the default speech gate
        clips = [seeded_clip(1.0 + (i % 4) * 0.5, seed=i) for i in range(8)]
        extra_server_args = (*STAND_IN_FLAGS, *extra_server_args)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = server_command(backbone, store, port, device, *extra_server_args)
    with started_processes([(command, {}, port)]) as (process,):
        server = psutil.Process(process.pid)
        samples: list[dict[str, float]] = []
        started = time.monotonic()

        async def run() -> tuple[int, int, dict]:
            load = asyncio.create_task(traffic(base, clips, started + seconds, concurrency, seed,
                                               traffic_uses_churned_sets))
            while not load.done():
                samples.append(sample(server, started))
                await asyncio.sleep(min(1.0, seconds / 30))
            return await load

        sent, ok, unexpected = asyncio.run(run())
        samples.append(sample(server, started))
        duration = time.monotonic() - started
    return SoakReport(duration, sent, ok, unexpected, samples, warmup_s=warmup_fraction * duration)


def soak_store(backbone: Path, store: Path, seed: int = 0) -> Path:
    return build_random_store(backbone, store, {**default_sets(), **EXTRA_SETS, **ADMIN_ONLY_SETS}, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--churn-idle-sets-only", action="store_true",
                        help="load/unload only sets no request uses (avoids the unload-while-leased race)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="elp-soak-") as temp:
        workdir = Path(args.workdir or temp)
        if args.backbone == "tiny":
            from elp.testing import save_tiny_backbone

            backbone = save_tiny_backbone(workdir / "tiny-backbone", family="wavlm")
            clips = None
        else:
            backbone = prepare_backbone(args.backbone, workdir)
            clips = corpus_clips(16, seed=args.seed)
        store = soak_store(backbone, workdir / "soak-store", seed=args.seed)
        report = run_soak(backbone, store, args.minutes * 60, concurrency=args.concurrency, clips=clips,
                          device=args.device, seed=args.seed,
                          traffic_uses_churned_sets=not args.churn_idle_sets_only)
    summary = report.summary()
    title = f"soak, backbone {Path(str(args.backbone)).name}, {args.minutes} min, concurrency {args.concurrency}"
    columns = list(summary)
    write_results("soak", {"title": title, "summary": summary, "samples": report.samples},
                  f"{title}\n\n" + markdown_table([summary], columns))
    return 0 if not report.unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
