"""A real PostgreSQL server for tests: initdb + pg_ctl in a temp dir, on loopback, trust auth.

PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody`` (runuser); as any
other user it is that user's. Skips when the Debian ``postgresql`` package is not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.helpers import free_port


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a ``postgresql://`` URL of a fresh cluster; stops it and removes its files after."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "nobody", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="elp-pg-"))
    data = root / "data"
    if as_root:
        shutil.chown(root, "nobody")
    port = free_port()
    log = root / "server.log"

    def run(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "elp", "--auth=trust", "-E", "UTF8")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start")
        yield f"postgresql://elp@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
