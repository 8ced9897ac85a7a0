"""Helpers of the batching worker that need none of its state: how rows split into model calls, how a
job whose answers finish elsewhere is settled, and the overload message."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol


class _Result(Protocol):
    predictions: list[Any]


def overloaded_message(wait_s: float, deadline_s: float) -> str:
    return (f"server overloaded: the estimated wait ({wait_s:.1f} s) is past the request deadline "
            f"({deadline_s:g} s); retry later")


def length_chunks(sorted_lengths: Sequence[int], ratio: float) -> list[tuple[int, int]]:
    """Split rows sorted by length into runs whose shortest row is at least ``ratio`` of the longest:
    (start, stop) slices. Jobs are grouped by their longest row, so a verify pair of a 2 s and a 9 s
    clip would otherwise pad the 2 s one to 9 s; one model call per run costs no padding on a CPU
    (where batching gains nothing) and few calls on a GPU (runs are as wide as the ratio allows)."""
    chunks: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(sorted_lengths) + 1):
        if index == len(sorted_lengths) or sorted_lengths[start] < ratio * sorted_lengths[index]:
            chunks.append((start, index))
            start = index
    return chunks


def settle_when_resolved(future: Future, result: _Result) -> None:
    """Answer ``future`` with ``result`` once every Future among its predictions has settled (each
    replaced by its value), or fail it with the first error; runs on whichever thread settles last."""
    pending = [(i, p) for i, p in enumerate(result.predictions) if isinstance(p, Future)]
    remaining = [len(pending)]
    lock = threading.Lock()

    def settled(index: int, done: Future) -> None:
        error = done.exception() if not done.cancelled() else RuntimeError("decoding was cancelled")
        if error is not None:
            fail_future(future, error)
            return
        result.predictions[index] = done.result()
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last and not future.done():
            with contextlib.suppress(Exception):  # raced with a cancel by a leaving client
                future.set_result(result)

    for index, prediction in pending:
        prediction.add_done_callback(lambda done, index=index: settled(index, done))


def fail_future(future: Future, exc: BaseException) -> None:
    """Set an exception unless the future is already settled (cancelled by a leaving client)."""
    if future.done():
        return
    if not future.running() and not future.set_running_or_notify_cancel():
        return
    with contextlib.suppress(Exception):  # raced with another settle
        future.set_exception(exc)
