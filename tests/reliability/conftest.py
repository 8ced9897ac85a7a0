"""Fixtures for the reliability tests: the server tests' tiny real backbone and store (imported, not
copied), and one real uvicorn server process per module where a test needs real sockets."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.server.conftest import anyio_backend, store_copy, tiny_store  # noqa: E402, F401
