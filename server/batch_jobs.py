"""What the batching worker (``server.batching``) moves around: a request's job and result, the stages a batch
runs through, and the collector that answers each job when its last post-processed row is back."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from server.batch_support import fail_future
from server.errors import OverloadedError

logger = logging.getLogger("server.batching")


class BatchStages(Protocol):
    """``core`` runs on the worker thread and returns one output per row; ``post`` turns them into
    answers, calling ``done(row index, answer or exception)`` for each row, now or later (from any
    thread). ``server.post_pool.PostStage`` for the served model; ``PredictStages`` (the default)
    for a model whose ``predict`` answers whole rows."""

    def core(self, model: Any, waveforms: Sequence[torch.Tensor], adapter_keys: Sequence[str]) -> list[Any]: ...

    def post(self, model: Any, rows: Sequence[Any], done: Callable[[int, Any], None]) -> None: ...


@dataclass
class InferenceJob:
    """One request's rows (verify sends two) and the future its handler awaits."""

    task: str
    waveforms: list[torch.Tensor]
    adapter_keys: list[str]
    deadline: float  # time.monotonic() after which the job is dropped unrun
    enqueued_at: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    started_at: float | None = None

    def __post_init__(self) -> None:
        if len(self.waveforms) != len(self.adapter_keys) or not self.waveforms:
            raise ValueError("a job needs one adapter key per waveform, and at least one waveform")

    @property
    def rows(self) -> int:
        return len(self.waveforms)

    @property
    def length(self) -> int:
        return max(int(w.shape[-1]) for w in self.waveforms)


@dataclass
class JobResult:
    predictions: list[Any]
    queue_wait_s: float
    inference_s: float


class WorkerStoppedError(OverloadedError):
    def __init__(self) -> None:
        super().__init__("the server is shutting down", retry_after_s=5)


class JobAnswers:
    """Collects a batch's post-processed rows back into its jobs: a job is answered when its last
    row is, and failed by the first row that fails (rows may finish on other threads)."""

    def __init__(self, jobs: list[InferenceJob], rows: list[tuple[int, int]], started: float,
                 elapsed: float) -> None:
        self.jobs, self.rows = jobs, rows
        self.started, self.elapsed = started, elapsed
        self.answers: list[list[Any]] = [[None] * job.rows for job in jobs]
        self.remaining = [job.rows for job in jobs]
        self.lock = threading.Lock()

    def row_done(self, index: int, answer: Any) -> None:
        job_index, row = self.rows[index]
        job = self.jobs[job_index]
        if isinstance(answer, BaseException):
            logger.error("post-processing a row of a %s request failed: %r", job.task, answer)
            fail_future(job.future, answer)
            return
        with self.lock:
            self.answers[job_index][row] = answer
            self.remaining[job_index] -= 1
            last = self.remaining[job_index] == 0
        if last and not job.future.done():
            result = JobResult(self.answers[job_index], self.started - job.enqueued_at, self.elapsed)
            with contextlib.suppress(Exception):  # raced with a cancel by a leaving client
                job.future.set_result(result)
