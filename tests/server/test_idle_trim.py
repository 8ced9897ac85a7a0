"""Freed heap memory goes back to the OS once the model has gone idle after some work, never while requests keep
coming (``server.memory.IdleTrimmer``): a fake clock and worker for the rule, the real worker for its idle
time, a real app for the wiring and the metric."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

import server.memory
from server.memory import IdleTrimmer
from tests.server.helpers import clip_files, make_settings, metric, running_app
from tests.server.test_server_batching import RecordingModel, hold_worker, job, make_worker, result


@dataclass
class FakeWorker:
    batches_run: int = 0
    last_end: float = 0.0
    busy: bool = False

    def idle_for(self, now: float) -> float:
        return 0.0 if self.busy else now - self.last_end


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_trimmer(worker: FakeWorker, clock: FakeClock) -> tuple[IdleTrimmer, list[float], list[int]]:
    trims, counted = [], []
    trimmer = IdleTrimmer(worker, 1.0, trim=lambda: trims.append(clock.now), clock=clock,
                          on_trim=lambda: counted.append(1))
    return trimmer, trims, counted


def test_one_trim_once_idle_after_work_and_none_again_until_more_work() -> None:
    worker, clock = FakeWorker(last_end=100.0), FakeClock()
    trimmer, trims, counted = make_trimmer(worker, clock)
    clock.now = 200.0
    assert not trimmer.trim_if_due()  # idle for long, but nothing has run since start: nothing to give back
    worker.batches_run, worker.last_end = 1, 200.0
    clock.now = 200.9
    assert not trimmer.trim_if_due()  # not idle long enough yet
    clock.now = 201.0
    assert trimmer.trim_if_due() and trims == [201.0] and counted == [1]
    clock.now = 300.0
    assert not trimmer.trim_if_due()  # no new work: the heap has nothing new to give back
    worker.batches_run, worker.last_end = 2, 300.0
    clock.now = 301.5
    assert trimmer.trim_if_due() and trims == [201.0, 301.5] and trimmer.trims == 2


def test_no_trim_while_requests_keep_the_model_busy() -> None:
    worker, clock = FakeWorker(batches_run=5, last_end=0.0, busy=True), FakeClock()
    trimmer, trims, _ = make_trimmer(worker, clock)
    worker.batches_run = 6
    for step in range(100):  # a back-to-back stream: each request arrives before the model has idled a second
        clock.now = 100.0 + step * 0.5
        worker.busy = step % 2 == 0
        worker.last_end = clock.now if not worker.busy else worker.last_end
        assert not trimmer.trim_if_due()
    assert trims == []


def test_the_worker_is_idle_only_with_nothing_queued_or_running() -> None:
    model = RecordingModel()
    model.gate.clear()
    started = time.monotonic()
    worker = make_worker(model, max_wait_s=0.0)
    try:
        blocker = hold_worker(model, worker)
        queued = worker.submit(job())
        assert worker.idle_for(time.monotonic() + 60) == 0.0  # one batch running, one job queued
        model.gate.set()
        result(blocker), result(queued)
        assert worker.batches_run == 2
        now = time.monotonic()
        assert 60.0 <= worker.idle_for(now + 60) <= 60.0 + (now - started)  # the last batch ended after the start
        assert worker.idle_for(now + 60) - worker.idle_for(now) == 60.0
    finally:
        worker.stop(1.0)


@pytest.mark.anyio
async def test_the_server_trims_once_idle_and_counts_it(tiny_store, tmp_path, monkeypatch) -> None:
    trimmed = threading.Event()
    monkeypatch.setattr(server.memory, "return_freed_memory", trimmed.set)
    settings = make_settings(*tiny_store, tmp_path, idle_trim_s=0.05)
    async with running_app(settings) as (app, client):
        trimmer, worker = app.state.service.idle_trimmer, app.state.service.worker
        assert (await client.post("/emotion", files=clip_files())).status_code == 200
        runs = worker.batches_run
        while trimmer.trimmed_after < runs:  # the trim after this request's batch (one after start may come first)
            assert await asyncio.to_thread(trimmed.wait, 30)
            trimmed.clear()
        assert metric(app, "elp_heap_trims_total") == trimmer.trims >= 1
