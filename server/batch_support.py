"""Helpers of the batching worker that need none of its state: how rows split into model calls, how a
future is failed safely, and the overload message."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import Future


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


def fail_future(future: Future, exc: BaseException) -> None:
    """Set an exception unless the future is already settled (cancelled by a leaving client)."""
    if future.done():
        return
    if not future.running() and not future.set_running_or_notify_cancel():
        return
    with contextlib.suppress(Exception):  # raced with another settle
        future.set_exception(exc)
