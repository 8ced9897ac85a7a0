"""The batching worker: the only threads that touch the model.

Handlers validate, then ``submit`` a job and await its future. A worker thread collects jobs until
the batch is full (rows) or the oldest job has waited ``max_wait_s``, drops jobs past their deadline
(504) or whose client left, lets the batch policy (``server/batch_policy.py``) choose the jobs and
split their rows into model calls, runs the batch's model stage (``stages.core``: each row's head
output) and hands the rows to the post stage (``stages.post``: each row's task post-processing, now or
in a pool), so the worker goes on to the next batch while an LM beam search finishes; a job is
answered when its last row is. An exception fails only that batch's (or that row's) futures; the
loop goes on. Adapter registration runs here too (``call``), when no batch runs, so the
model never changes under a running batch.

``workers`` > 1 runs that many such threads over the same model (one copy of the weights): each forms
and runs its own batches. On a CPU that is inter-op parallelism over the cores, and on a GPU one
thread's Python and host work overlaps another's kernels. Inference only reads the model; the
per-batch adapter routing is thread-local. With ``intra_op_threads`` (CPU), each worker thread sets
its own torch intra-op threads before each batch to its share of them: all while it runs alone (a
lone request gets every core), ``intra_op_threads // running batches`` while others run (no more
threads than cores: an OpenMP team waits at every barrier for a thread that is not scheduled).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import torch

from server.batch_jobs import (  # noqa: F401  (JobResult: re-exported for the service and tests)
    BatchStages,
    InferenceJob,
    JobAnswers,
    JobResult,
    WorkerStoppedError,
)
from server.batch_policy import BatchPolicy, LengthRatioPolicy
from server.batch_support import fail_future, overloaded_message
from server.errors import OverloadedError, RequestTimeoutError
from server.metrics import ServerMetrics
from server.post_pool import PredictStages

logger = logging.getLogger("server.batching")

#: how many queued jobs the worker looks at when grouping by length
_GROUPING_WINDOW_FACTOR = 4
#: model seconds per row assumed before the first batch has been timed
_ROW_SECONDS_PRIOR = 0.02


class BatchWorker:
    """Owns the model; forms and runs batches on a single daemon thread."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch_rows: int,
        max_wait_s: float,
        max_queue: int,
        metrics: ServerMetrics,
        length_ratio: float = 0.0,
        workers: int = 1,
        wait_only_while_incoming: bool = False,
        stages: BatchStages | None = None,
        policy: BatchPolicy | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError("a batch worker needs at least one thread")
        self.model = model
        self.stages: BatchStages = stages or PredictStages()
        self.workers = workers
        # torch intra-op threads the worker threads share (0: leave torch's setting alone)
        self.intra_op_threads = intra_op_threads
        # Waiting for company only pays while some is on its way: with this set, a batch waits (up to
        # max_wait_s) only while a request marked by ``incoming()`` is still being decoded.
        self.wait_only_while_incoming = wait_only_while_incoming
        self._incoming = 0
        self.max_batch_rows = max_batch_rows
        # which queued jobs run together and how their rows split into calls (server/batch_policy.py)
        self.policy: BatchPolicy = policy or LengthRatioPolicy(max_batch_rows, length_ratio)
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._jobs: deque[InferenceJob] = deque()
        self._controls: deque[tuple[Callable[[Any], Any], Future]] = deque()
        self._cond = threading.Condition()
        self._accepting = False
        self._stop_requested = False
        self._threads: list[threading.Thread] = []
        self._running_batches = 0  # batches in model.predict now; controls wait for 0
        self._running_rows = 0
        self._controls_running = False
        # running average of model time per row (per worker thread): the admission estimate's unit
        self._row_seconds_ema = _ROW_SECONDS_PRIOR
        self.batches_run = 0
        self._last_batch_end = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._accepting = True
        names = ["elp-model-worker"] if self.workers == 1 else [f"elp-model-worker-{i}" for i in range(self.workers)]
        self._threads = [threading.Thread(target=self._run, name=name, daemon=True) for name in names]
        for thread in self._threads:
            thread.start()

    def stop(self, drain_timeout_s: float) -> None:
        """Refuse new jobs, answer the queued ones for up to ``drain_timeout_s``, refuse the rest."""
        with self._cond:
            self._accepting = False
            self._cond.notify_all()
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                if not self._jobs and not self._controls:
                    break
            time.sleep(0.01)
        with self._cond:
            self._stop_requested = True
            leftovers = list(self._jobs)
            controls = list(self._controls)
            self._jobs.clear()
            self._controls.clear()
            self._cond.notify_all()
            self._metrics.queue_depth.set(0)
        for job in leftovers:
            fail_future(job.future, WorkerStoppedError())
        for _, future in controls:
            fail_future(future, WorkerStoppedError())
        join_until = time.monotonic() + max(1.0, drain_timeout_s)
        for thread in self._threads:
            thread.join(timeout=max(0.0, join_until - time.monotonic()))
            if thread.is_alive():
                logger.warning("%s still busy after shutdown timeout; leaving it (daemon thread)", thread.name)

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    @property
    def queue_depth(self) -> int:
        return len(self._jobs)

    def estimated_wait_s(self, extra_rows: int = 0) -> float:
        """Seconds until a job of ``extra_rows`` queued now would be answered: the rows ahead of it
        (queued and running) times the running average model time per row."""
        with self._cond:
            return self._wait_locked(extra_rows)

    # -- producers (any thread) ------------------------------------------------------------------
    def submit(self, job: InferenceJob, *, max_wait_s: float | None = None) -> Future:
        """Queue a job or raise ``OverloadedError`` at once: shutting down, queue full, or (with
        ``max_wait_s``) an estimated wait past it, so the client hears it now instead of a 504 later."""
        with self._cond:
            if not self._accepting:
                raise WorkerStoppedError()
            if len(self._jobs) >= self.max_queue:
                raise OverloadedError(
                    f"request queue is full ({self.max_queue} waiting)", retry_after_s=self._wait_locked(job.rows)
                )
            wait = self._wait_locked(job.rows)
            if max_wait_s is not None and wait > max_wait_s and (self._jobs or self._running_rows):
                raise OverloadedError(overloaded_message(wait, max_wait_s), retry_after_s=wait)
            self._jobs.append(job)
            self._metrics.queue_depth.set(len(self._jobs))
            self._cond.notify_all()
        return job.future

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request on its way to ``submit`` (upload being decoded) for the span of the block."""
        with self._cond:
            self._incoming += 1
        try:
            yield
        finally:
            with self._cond:
                self._incoming -= 1
                self._cond.notify_all()

    def call(self, fn: Callable[[Any], Any]) -> Future:
        """Run ``fn(model)`` on the worker thread between batches (adapter add/remove)."""
        future: Future = Future()
        with self._cond:
            if self._stop_requested or not self.alive:
                fail_future(future, WorkerStoppedError())
                return future
            self._controls.append((fn, future))
            self._cond.notify_all()
        return future

    def idle_for(self, now: float) -> float:
        """Seconds since the last batch ended, with nothing queued or running since (0 while busy)."""
        with self._cond:
            if self._jobs or self._running_batches or self._controls or self._controls_running:
                return 0.0
            return max(0.0, now - self._last_batch_end)

    def _wait_locked(self, extra_rows: int) -> float:
        rows_ahead = sum(job.rows for job in self._jobs) + self._running_rows
        return (rows_ahead + extra_rows) * self._row_seconds_ema

    # -- the loop ----------------------------------------------------------------------------------
    def thread_share(self) -> int:
        """Intra-op threads for a batch starting now: an equal share among the batches running (this
        one included), all of them when it runs alone."""
        with self._cond:
            running = max(1, self._running_batches)
        return max(1, self.intra_op_threads // running)

    def _run(self) -> None:
        threads_now = 0
        if self.intra_op_threads:
            # torch reads its thread count lazily, once per thread, from the process-wide value: do that
            # first, so that this thread's own setting below is not overwritten by it
            threads_now = torch.get_num_threads()
        while True:
            try:
                batch = self._next_batch()
            except Exception:  # pragma: no cover - defensive: the loop must never die
                logger.exception("batch formation failed")
                continue
            if batch is None:
                return
            if batch:
                if self.intra_op_threads and (share := self.thread_share()) != threads_now:
                    torch.set_num_threads(share)  # this thread's OpenMP and MKL threads only
                    threads_now = share
                try:
                    self._run_batch(batch)
                finally:
                    with self._cond:
                        self._running_batches -= 1
                        self._running_rows -= sum(job.rows for job in batch)
                        self._last_batch_end = time.monotonic()
                        self._cond.notify_all()

    def _next_batch(self) -> list[InferenceJob] | None:
        """Block until there is work; run controls; return a batch ([] = nothing to run), None = stop."""
        with self._cond:
            # (another thread running controls: wait for it, not spin)
            while (self._controls_running or not (self._jobs or self._controls)) and not self._stop_requested:
                self._cond.wait()
            if self._stop_requested:
                return None
            controls = []
            if self._controls:
                # controls change the model: only when no batch runs, one thread at a time
                while (self._running_batches or self._controls_running) and not self._stop_requested:
                    self._cond.wait()
                if self._stop_requested or not self._controls:
                    return []  # stopping, or another thread ran them
                controls = list(self._controls)
                self._controls.clear()
                self._controls_running = True
        if controls:
            try:
                for fn, future in controls:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(fn(self.model))
                        except BaseException as exc:  # noqa: BLE001 - handed to the caller
                            future.set_exception(exc)
            finally:
                with self._cond:
                    self._controls_running = False
                    self._cond.notify_all()
            return []

        with self._cond:
            # wait for company: until full, or the oldest job has waited max_wait_s, or a control op
            while self._jobs and not self._controls and not self._stop_requested:
                rows = sum(job.rows for job in self._jobs)
                remaining = self._jobs[0].enqueued_at + self.max_wait_s - time.monotonic()
                if rows >= self.max_batch_rows or remaining <= 0 or not self._accepting:
                    break
                if self.wait_only_while_incoming and not (self._incoming and self.policy.worth_waiting(self._jobs)):
                    break  # nobody on the way, or (cost policy) a fuller batch would not be cheaper per row
                self._cond.wait(timeout=remaining)
            if self._controls or self._controls_running or self._stop_requested or not self._jobs:
                return []
            batch = self._take_batch_locked()
            self._metrics.queue_depth.set(len(self._jobs))
            if batch:
                self._running_batches += 1
                self._running_rows += sum(job.rows for job in batch)
        return batch

    def _take_batch_locked(self) -> list[InferenceJob]:
        """Drop cancelled and expired jobs from the front of the queue, let the policy choose among the
        rest, and put the ones not chosen back in arrival order."""
        now = time.monotonic()
        window: list[InferenceJob] = []
        while self._jobs and len(window) < self.max_batch_rows * _GROUPING_WINDOW_FACTOR:
            job = self._jobs.popleft()
            if job.future.cancelled():
                continue  # client went away
            if now > job.deadline:
                waited = now - job.enqueued_at
                fail_future(job.future, RequestTimeoutError(f"request waited {waited:.2f} s in the queue; dropped"))
                continue
            window.append(job)
        if not window:
            return []
        try:
            batch = self.policy.choose(window, now)
        except Exception:  # a policy bug must not lose the window: the oldest job runs alone
            logger.exception("batch policy failed; running the oldest job alone")
            batch = [window[0]]
        chosen = {id(job) for job in batch}
        leftover = sorted((job for job in window if id(job) not in chosen), key=lambda job: job.enqueued_at)
        self._jobs.extendleft(reversed(leftover))
        return batch

    def _run_batch(self, batch: list[InferenceJob]) -> None:
        started = time.monotonic()
        runnable = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not runnable:
            return
        # rows sorted by length, so that each chunk below pads little
        rows = [(job_index, row) for job_index, job in enumerate(runnable) for row in range(job.rows)]
        rows.sort(key=lambda ir: int(runnable[ir[0]].waveforms[ir[1]].shape[-1]))
        waveforms = [runnable[i].waveforms[r] for i, r in rows]
        keys = [runnable[i].adapter_keys[r] for i, r in rows]
        for job in runnable:
            job.started_at = started
            self._metrics.queue_wait.labels(job.task).observe(started - job.enqueued_at)
            self._metrics.inference_rows.labels(job.task).inc(job.rows)
        self._metrics.batch_size.observe(len(waveforms))
        self._metrics.batch_tasks.observe(len({job.task for job in runnable}))
        self._metrics.batch_adapter_sets.observe(len(set(keys)))
        try:
            outputs: list[Any] = []
            lengths = [int(w.shape[-1]) for w in waveforms]
            calls = self.policy.split_calls(lengths)
            for start, stop in calls:
                outputs += self.stages.core(self.model, waveforms[start:stop], keys[start:stop])
            if len(outputs) != len(waveforms):
                raise RuntimeError(f"model returned {len(outputs)} outputs for {len(waveforms)} rows")
            self.policy.observe(lengths, calls, time.monotonic() - started)
        except Exception as exc:
            self._metrics.batch_failures.inc()
            logger.exception("batch of %d rows failed; failing its %d requests", len(waveforms), len(runnable))
            for job in runnable:
                fail_future(job.future, exc)
            return
        finally:
            elapsed = time.monotonic() - started
            self._metrics.batch_duration.observe(elapsed)
            with self._cond:
                # per worker thread: a batch's share of the device time when several run at once
                row_seconds = elapsed / len(waveforms) / self.workers
                self._row_seconds_ema = 0.8 * self._row_seconds_ema + 0.2 * row_seconds
                self.batches_run += 1
        answers = JobAnswers(runnable, rows, started, elapsed)
        try:
            self.stages.post(self.model, outputs, answers.row_done)
        except Exception as exc:  # a post stage reports row errors itself; this is a bug in one
            logger.exception("post stage of a batch of %d rows failed", len(waveforms))
            for job in runnable:
                fail_future(job.future, exc)
