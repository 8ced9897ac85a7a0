"""Closed-loop load generator on the project's own async client.

``concurrency`` workers each send one request, wait for its answer, send the next, until the
point's request budget is spent. Each request picks a task (the mixed stream) and a clip; verify
sends a second clip as reference (``request_plan``: the same seeded plan for every system, and the
rows ``benchmarks.overhead`` times the raw model on). ``route`` maps a task to a base URL, so one
stream can be spread over several single-task servers (the per-task-process baseline) or sent to one
server. The generator's own CPU time is measured (``client_cpu_ms_per_req``): it shares the cores
with the server it measures.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import Clip, percentiles_ms
from clients import AsyncELPClient
from clients.errors import ELPClientError
from elp.tasks import set_tasks, task_for_endpoint

#: the endpoints a mixed load draws from (every registered task's)
TASKS = tuple(spec.endpoint for spec in set_tasks())  # the tasks of the benchmark mixes


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    elapsed_s: float
    latencies_s: list[float]
    outcomes: Counter = field(default_factory=Counter)
    ok_rows: int = 0  # model rows answered: verify sends two clips
    client_cpu_s: float = 0.0  # CPU time of this process (all its threads) during the run

    @property
    def ok(self) -> int:
        return self.outcomes.get("200", 0)

    def summary(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": self.ok,
                "errors": self.requests - self.ok, "req_per_s": round(self.ok / self.elapsed_s, 3),
                "rows_per_s": round(self.ok_rows / self.elapsed_s, 3),
                "client_cpu_ms_per_req": round(1000.0 * self.client_cpu_s / max(1, self.requests), 2),
                "client_cores": round(self.client_cpu_s / self.elapsed_s, 3),
                **percentiles_ms(self.latencies_s), "outcomes": dict(self.outcomes)}


def rows_per_request(endpoint: str) -> int:
    """Clips one request sends (the file and the task's extra clips, e.g. /verify's reference)."""
    return 1 + len(task_for_endpoint(endpoint).extra_clips)


async def _one_request(client: AsyncELPClient, endpoint: str, clip: Clip, reference: Clip,
                       adapter: str | None) -> None:
    """One request to ``endpoint``, with ``reference`` as each extra clip its task takes."""
    extra = [reference.data] * (rows_per_request(endpoint) - 1)
    await client.task(endpoint, clip.data, *extra, adapter=adapter)


@dataclass(frozen=True)
class PlannedRequest:
    task: str  # the endpoint
    clip: Clip
    reference: Clip  # sent as each extra clip the task takes
    adapter: str | None

    @property
    def clips(self) -> list[Clip]:
        """The clips this request uploads: the model rows it costs."""
        return [self.clip] + [self.reference] * (rows_per_request(self.task) - 1)


def request_plan(clips: Sequence[Clip], total_requests: int, *, tasks: Sequence[str] = TASKS,
                 adapter_for: Callable[[str, random.Random], str | None] | None = None,
                 seed: int = 0) -> list[PlannedRequest]:
    """The seeded request stream: each request's task, clip, reference and adapter."""
    rng = random.Random(seed)
    plan = []
    for _ in range(total_requests):
        task = rng.choice(list(tasks))
        adapter = adapter_for(task, rng) if adapter_for else None
        plan.append(PlannedRequest(task, rng.choice(clips), rng.choice(clips), adapter))
    return plan


async def run_load(
    route: Callable[[str], str],
    clips: Sequence[Clip],
    *,
    concurrency: int,
    total_requests: int,
    tasks: Sequence[str] = TASKS,
    adapter_for: Callable[[str, random.Random], str | None] | None = None,
    seed: int = 0,
    timeout_s: float = 600.0,
) -> LoadResult:
    """Send ``total_requests`` mixed requests with ``concurrency`` in flight; latency of every answer."""
    plan = request_plan(clips, total_requests, tasks=tasks, adapter_for=adapter_for, seed=seed)
    clients: dict[str, AsyncELPClient] = {}
    for task in set(tasks):
        url = route(task)
        clients.setdefault(url, AsyncELPClient(url, timeout=timeout_s))
    latencies: list[float] = []
    outcomes: Counter = Counter()
    rows = [0]
    cursor = iter(plan)

    async def worker() -> None:
        for request in cursor:
            started = time.perf_counter()
            try:
                await _one_request(clients[route(request.task)], request.task, request.clip, request.reference,
                                   request.adapter)
                outcomes["200"] += 1
                rows[0] += rows_per_request(request.task)
                latencies.append(time.perf_counter() - started)
            except ELPClientError as exc:
                outcomes[f"{exc.status} {exc.code}"] += 1
            except Exception as exc:  # connection errors count, they must not stop the run
                outcomes[type(exc).__name__] += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for client in clients.values():
            await client.aclose()
    return LoadResult(concurrency, total_requests, time.perf_counter() - started, latencies, outcomes, rows[0],
                      time.process_time() - cpu_started)
