"""What every pool process of the server runs first (``ProcessPoolExecutor(initializer=...)``).

A pool process waits on its task queue; if the server is killed outright (SIGKILL, the OOM killer, a
container stop past its grace period) nothing tells it to stop, and it waits forever, orphaned, holding
its memory (seen here: decoding processes left behind by killed benchmark servers). So each one watches
its parent and ends when the parent is gone.
"""

from __future__ import annotations

import os
import threading
import time

#: how often a pool process checks that the server is still its parent
PARENT_POLL_S = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """Start a daemon thread that ends this process once ``parent_pid`` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="elp-parent-watch", daemon=True).start()
