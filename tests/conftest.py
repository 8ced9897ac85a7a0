"""Shared fixtures: one tiny real backbone + adapter store per session, for the server, client,
deploy and reliability tests (built once, read-only; tests that edit it take a private copy)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.server.helpers import build_store, copy_store  # noqa: E402


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(backbone folder, adapter store) shared read-only by every test of the session."""
    return build_store(tmp_path_factory.mktemp("elp-tiny"))


@pytest.fixture
def store_copy(tiny_store: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the store for tests that edit, corrupt or add sets."""
    return copy_store(tiny_store[1], tmp_path / "adapters")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
