"""The post stage: each row's post-processing (``elp.tasks``) after the model stage ran its batch.

A batch is served in three stages, like Infinity's pre / core / post: the handlers decode audio
(pre), the model worker runs the batch (core: each row's head output, ``MultiAdapterModel.head_outputs``)
and each row's task post-processor turns its head output into answer fields (post). A post-processor
whose ``offload`` is set (an LM beam search: 15-25 ms a clip, compiled, without the GIL; ~85 ms in Python where numba is
missing) runs in a pool, so the worker goes on to the next batch at once; cheap ones (softmax, best path, an
embedding) run on the worker right after the batch.

The pool is processes (a crash stays in its process; a search in Python, where numba is missing, holds no GIL the
worker needs) or threads (no second interpreter and no copies; the compiled search releases the GIL): the
``post_pool`` setting. Processes are single-worker executors chosen round-robin, so the parent knows
which post-processors each holds and ships one (the task's own picklable object: vocabulary and LM
tensors, ~1 MB) only with a process's first row of that adapter version. A process that dies fails
only the rows it held; the next row starts a fresh one.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from server.pool_processes import single_worker_process

#: post-processors each process keeps (parent and child evict in the same order)
_SLOTS = 16

#: (row index, its Prediction or the error that row met): how the post stage reports each row
RowDone = Callable[[int, Any], None]

# -- child side ----------------------------------------------------------------------------------
_processors: OrderedDict[str, Any] = OrderedDict()


def _post_in_child(key: str, processor: Any | None, output: Any) -> dict[str, Any]:
    if processor is not None:
        _processors[key] = processor
    found = _processors.get(key)
    if found is None:  # the parent's bookkeeping and ours disagree: a bug, not a user error
        raise RuntimeError(f"post-processing process has no post-processor for {key}")
    _processors.move_to_end(key)
    while len(_processors) > _SLOTS:
        _processors.popitem(last=False)
    return found(output)


def _warm_up() -> None:
    import torch  # noqa: F401 - rows arrive as tensors: import torch before the first one

    import elp.tasks  # noqa: F401
    from elp.decoding.compiled import warm_up

    warm_up()  # the compiled beam search, before a row needs it


# -- parent side ---------------------------------------------------------------------------------
class _Process:
    """One single-worker executor and the post-processors it holds, in the order it last used them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # a done-callback may run inside submit
        self.executor: ProcessPoolExecutor | None = None
        self.holds: OrderedDict[str, None] = OrderedDict()

    def _executor_locked(self) -> ProcessPoolExecutor:
        """The live executor, or a fresh one (holding no post-processors yet)."""
        if self.executor is None:
            self.executor = single_worker_process()
            self.holds.clear()
        return self.executor

    def start(self) -> None:
        """Spawn now (interpreter + torch import take seconds), not on the first request."""
        with self.lock:
            self._executor_locked().submit(_warm_up)

    def submit(self, key: str, processor: Any, output: Any) -> Future:
        with self.lock:
            for attempt in range(2):
                executor = self._executor_locked()
                shipped = None if key in self.holds else processor
                try:
                    future = executor.submit(_post_in_child, key, shipped, output)
                except BrokenProcessPool:  # died since its last row: start a fresh one, once
                    self._discard()
                    if attempt:
                        raise
                    continue
                self.holds[key] = None
                self.holds.move_to_end(key)
                while len(self.holds) > _SLOTS:
                    self.holds.popitem(last=False)
                future.add_done_callback(functools.partial(self._check, executor=executor))
                return future
        raise AssertionError("unreachable")

    def _check(self, future: Future, executor: ProcessPoolExecutor) -> None:
        if not future.cancelled() and isinstance(future.exception(), BrokenProcessPool):
            with self.lock:
                if self.executor is executor:  # not a fresh one started since
                    self._discard()

    def _discard(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = None
        self.holds.clear()

    def shutdown(self) -> None:
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # rows already handed over are finished, not dropped


class PostPool:
    """``submit(key, processor, output)`` -> Future of ``processor(output)``, run in one of ``workers``
    processes (``kind="processes"``) or threads. ``key`` names the processor (an adapter version):
    a process receives each processor once."""

    def __init__(self, workers: int, kind: str = "processes") -> None:
        if workers < 1:
            raise ValueError("a post-processing pool needs at least one worker")
        if kind not in ("processes", "threads"):
            raise ValueError(f"post pool kind must be processes or threads, got {kind!r}")
        self.kind = kind
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="elp-post") if kind == "threads" else None
        self._processes = [_Process() for _ in range(workers)] if kind == "processes" else []
        self._turn = itertools.count()
        for process in self._processes:
            process.start()

    def submit(self, key: str, processor: Any, output: Any) -> Future:
        if self._threads is not None:
            return self._threads.submit(processor, output)
        process = self._processes[next(self._turn) % len(self._processes)]
        return process.submit(key, processor, output)

    def shutdown(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        for process in self._processes:
            process.shutdown()


class PostStage:
    """The stages the batch worker runs for the served model: ``core`` (head outputs, on the worker)
    and ``post`` (each row's post-processor: offloaded ones in ``pool``, the rest at once)."""

    def __init__(self, pool: PostPool | None = None) -> None:
        self.pool = pool

    def core(self, model: Any, waveforms: Sequence[Any], adapter_keys: Sequence[str]) -> list[Any]:
        return model.head_outputs(list(waveforms), list(adapter_keys))

    def post(self, model: Any, rows: Sequence[Any], done: RowDone) -> None:
        """Call ``done(i, answer)`` for each row, now or when its pool work finishes (an error is
        handed over as the answer: it fails only that row's request)."""
        for index, row in enumerate(rows):
            try:
                processor = model.adapter_sets[row.adapter].post_processor
                if self.pool is None or not processor.offload:
                    done(index, _prediction(row, processor(row.output)))
                    continue
                future = self.pool.submit(row.adapter, processor, row.output)
            except Exception as exc:  # noqa: BLE001 - that row's request gets it
                done(index, exc)
                continue
            future.add_done_callback(functools.partial(_report, index=index, row=row, done=done))

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _prediction(row: Any, fields: dict[str, Any]) -> Any:
    """A row's answer from its post-processor's fields, wherever that ran."""
    from elp import Prediction

    return Prediction(row.task, row.adapter, **fields)


def _report(future: Future, *, index: int, row: Any, done: RowDone) -> None:
    if future.cancelled():
        done(index, RuntimeError("post-processing was cancelled"))
    elif future.exception() is not None:
        done(index, future.exception())
    else:
        done(index, _prediction(row, future.result()))


class PredictStages:
    """Stages for a model that answers whole rows itself (``predict``): everything in ``core``."""

    def core(self, model: Any, waveforms: Sequence[Any], adapter_keys: Sequence[str]) -> list[Any]:
        return list(model.predict(list(waveforms), list(adapter_keys)))

    def post(self, model: Any, rows: Sequence[Any], done: RowDone) -> None:
        for index, row in enumerate(rows):
            done(index, row)

    def shutdown(self) -> None:
        return None
