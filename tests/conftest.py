"""Shared fixtures: the tiny real backbones (one checkpoint per family, built once per session: the
only place tests build one, except those that need a *different* backbone on purpose) and one
adapter store for the server, client, deploy and reliability tests (read-only; tests that edit it
take a private copy). Checkpoint folders are shared, loaded models are not: each test module
loads its own, so no test sees another's adapters attached to a backbone."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.server.helpers import build_store, copy_store  # noqa: E402

TinyBackboneDir = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> TinyBackboneDir:
    """``tiny_backbone_dir(family="wavlm", stable_layer_norm=False)``: the folder of a tiny random
    checkpoint of that family (seed 0), written on first use and shared read-only by the session."""
    from elp.testing import save_tiny_backbone

    root = tmp_path_factory.mktemp("tiny-backbones")
    built: dict[tuple[str, bool], Path] = {}

    def folder(family: str = "wavlm", stable_layer_norm: bool = False) -> Path:
        key = (family, stable_layer_norm)
        if key not in built:
            name = f"{family}-{'preln' if stable_layer_norm else 'postln'}"
            built[key] = save_tiny_backbone(root / name, family, stable_layer_norm)
        return built[key]

    return folder


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_backbone_dir: TinyBackboneDir) -> tuple[Path, Path]:
    """(backbone folder, adapter store) shared read-only by every test of the session. The beam search is
    compiled first (into numba's cache: ~15 s on a fresh clone, 0.1 s after), since a server is not ready before."""
    from elp.decoding.compiled import warm_up

    warm_up()
    return build_store(tmp_path_factory.mktemp("elp-tiny"), backbone_dir=tiny_backbone_dir("wavlm"))


@pytest.fixture
def store_copy(tiny_store: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the store for tests that edit, corrupt or add sets."""
    return copy_store(tiny_store[1], tmp_path / "adapters")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SpokenClip = Callable[..., np.ndarray]


@pytest.fixture(scope="session")
def spoken_clip(tmp_path_factory: pytest.TempPathFactory) -> SpokenClip:
    """``spoken_clip(text, voice="en-us")``: espeak-ng's reading of ``text`` as 16 kHz float32 (espeak-ng is
    deterministic for the same arguments): a real voice for the tests that need one (the voice detector
    refuses the tone stand-ins). Skips without espeak-ng (scripts/run_tests.sh installs it)."""
    import shutil
    import subprocess

    import soundfile as sf
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("spoken")

    def speak(text: str, voice: str = "en-us"):
        path = root / f"{abs(hash((text, voice)))}.wav"
        if not path.is_file():
            subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-p", "50", "-w", str(path), text], check=True)
        samples, rate = sf.read(path, dtype="float32")
        return resample_poly(samples, 16000, rate).astype("float32")

    return speak
