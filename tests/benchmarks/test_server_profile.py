"""The server profile's bookkeeping: per-thread CPU from /proc, thread names from a py-spy recording."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from benchmarks import server_profile


def test_thread_cpu_counts_this_threads_work() -> None:
    before = server_profile.thread_cpu_s(os.getpid())[str(threading.get_native_id())]
    total = 0
    for value in range(3_000_000):  # ~0.1-0.3 s of CPU on this thread
        total += value
    after = server_profile.thread_cpu_s(os.getpid())[str(threading.get_native_id())]
    assert total and after > before


def test_thread_names_come_from_the_py_spy_stacks_and_pools_merge(tmp_path: Path) -> None:
    raw = tmp_path / "py-spy.txt"
    raw.write_text("thread (101): elp-model-worker;Thread._bootstrap (threading.py:1002) 40\n"
                   'process 9:"python -m server";thread (102): elp-decode_0;_worker (thread.py:81) 3\n'
                   "thread (103): elp-decode_1;_worker (thread.py:81) 2\n")
    assert server_profile.thread_names(raw) == {"101": "elp-model-worker", "102": "elp-decode", "103": "elp-decode"}
