"""Memory and CPU of a process and its children (a server and its pools), for the benchmarks: summed RSS, CPU
seconds, and a sampler of the peak RSS while a load runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import psutil


def process_tree(pids: Sequence[int]) -> Iterator[psutil.Process]:
    """The processes and all their live children, each once."""
    seen: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                if process.pid not in seen:
                    seen.add(process.pid)
                    yield process


def tree_rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of the processes and all their children (each counted once)."""
    total = 0
    for process in process_tree(pids):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def tree_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by the processes and their live children."""
    total = 0.0
    for process in process_tree(pids):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class PeakRssSampler:
    """Samples the summed RSS of a process tree on a thread; ``peak`` after the ``with`` block."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.25) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pids))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRssSampler:
        self.peak = tree_rss_bytes(self.pids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pids))
