"""The server's pool processes (decoding, post-processing): how they start and how they end.

``single_worker_process()`` is the one way they are made: spawned, not forked (the server holds
threads, torch's thread pools and maybe a CUDA context, which a fork copies broken), one worker each
(so a crash fails only what that process held), and watching their parent (below).

A pool process waits on its task queue; if the server is killed outright (SIGKILL, the OOM killer, a
container stop past its grace period) nothing tells it to stop, and it waits forever, orphaned, holding
its memory (seen here: decoding processes left behind by killed benchmark servers). So each one watches
its parent and ends when the parent is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

#: how often a pool process checks that the server is still its parent
PARENT_POLL_S = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """Start a daemon thread that ends this process once ``parent_pid`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="elp-parent-watch", daemon=True).start()


def single_worker_process() -> ProcessPoolExecutor:
    """A one-worker spawned pool whose process ends with this one (``exit_with_parent``)."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent,
                               initargs=(os.getpid(),))
