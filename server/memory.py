"""Giving freed heap memory back to the OS: after a set's load or unload, and once the model has gone idle.

glibc keeps freed memory in its heap for the next allocation. A server whose requests vary in length (1-30 s
clips, decoders, beam searches) frees buffers of every size, and the heap stays near its busiest moment's size
long after it: ~2.3 GB after a mixed load on the shipped sets where ~1.0 GB was resident when ready. Prometheus
then shows a process that looks like it leaks. ``malloc_trim`` hands the free pages back; it takes arena locks, so
it runs off the request path (the I/O pool) and, after a load, only when the model has had no batch for a while.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing). A 100 MB decoder set's
    load left the process ~155 MB larger before a trim and ~105 MB after (``language-whisper``, a 2-core CPU)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class IdleClock(Protocol):
    """What the trimmer reads of the batch worker (``server.batching.BatchWorker``)."""

    batches_run: int

    def idle_for(self, now: float) -> float: ...


class IdleTrimmer:
    """One trim once the model has been idle ``idle_s`` after some work; none again until more work has run.

    A stream of requests never triggers it: each arrives before the model has been idle that long."""

    def __init__(self, worker: IdleClock, idle_s: float, trim: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, on_trim: Callable[[], None] | None = None) -> None:
        self.worker, self.idle_s, self._trim, self._clock, self._on_trim = worker, idle_s, trim, clock, on_trim
        #: the worker's batch count at the last trim (at start: nothing to give back before the first batch)
        self.trimmed_after = worker.batches_run
        self.trims = 0

    def due(self) -> bool:
        return self.worker.batches_run != self.trimmed_after and self.worker.idle_for(self._clock()) >= self.idle_s

    def trim_if_due(self) -> bool:
        """Trim when due (call it off the request path); True when it did."""
        if not self.due():
            return False
        self.trimmed_after = self.worker.batches_run
        self.trims += 1
        if self._on_trim is not None:  # counted as it starts
            self._on_trim()
        started = self._clock()
        (self._trim or return_freed_memory)()
        logger.debug("heap trimmed after %.1f s idle in %.1f ms", self.idle_s, 1000 * (self._clock() - started))
        return True
