"""Shared builders for server, client and deploy tests: a tiny real backbone, a store of random
adapter sets, fixed-seed audio, and an in-process app with its lifespan running."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[2]

EMOTION_LABELS = ["neutral", "happy", "sad", "angry"]
INTENT_LABELS = ["activate_lights_kitchen", "deactivate_lights_kitchen", "increase_volume_none"]


def build_store(root: Path, backbone_dir: Path | None = None) -> tuple[Path, Path]:
    """Tiny wavlm backbone (``backbone_dir``, else written under ``root``) + the four default sets and
    a second emotion set. Returns (backbone, store)."""
    from elp import load_backbone
    from elp.testing import make_random_adapter_set, save_tiny_backbone

    backbone_dir = backbone_dir or save_tiny_backbone(root / "backbone", family="wavlm")
    backbone = load_backbone(str(backbone_dir))
    store = root / "adapters"
    sets = {
        "asr-default": dict(task="asr", seed=1),
        "verify-default": dict(task="verification", seed=2),
        "emotion-default": dict(task="emotion", labels=EMOTION_LABELS, seed=3),
        "intent-default": dict(task="intent", labels=INTENT_LABELS, seed=4),
        "emotion-alt": dict(task="emotion", labels=EMOTION_LABELS, seed=5),
    }
    for adapter_id, kwargs in sets.items():
        aset = make_random_adapter_set(backbone, **kwargs)
        if kwargs["task"] == "verification":
            aset.config.threshold = 0.7
        aset.save(store / adapter_id)
    return backbone_dir, store


def copy_store(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def wav_bytes(seconds: float = 1.0, *, seed: int = 0, sample_rate: int = 16000, channels: int = 1,
              subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """A fixed-seed harmonic tone plus noise, encoded by soundfile."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = rng.uniform(90, 250)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    wave = 0.3 * wave / max(np.max(np.abs(wave)), 1e-9) + 0.02 * rng.standard_normal(t.shape)
    data = np.stack([wave * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def make_settings(backbone: Path, store: Path, tmp: Path, **overrides):
    from server.settings import Settings

    # speech_detector: the clips of these tests are tone stand-ins (wav_bytes), which the voice detector
    # rightly refuses as no voice; the detector itself is tested on espeak speech (tests/server/test_voice_gate.py)
    values = dict(backbone=str(backbone), adapters_dir=store, speakers_dir=tmp / "speakers",
                  max_wait_ms=5.0, log_level="warning", speech_detector="level")
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_app(settings, *, wait_ready: bool = True) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The app with its lifespan running, and an httpx client talking to it in-process."""
    from server.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://elp.test", timeout=60) as client:
            if wait_ready:
                await wait_until_ready(client)
            yield app, client


async def wait_until_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not ready: {(await client.get('/readyz')).json()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server_process(args: list[str], env: dict[str, str] | None = None, *, port: int,
                   timeout_s: float = 60.0) -> Iterator[subprocess.Popen]:
    """Start a real server process and wait until /readyz answers 200; stop it (SIGTERM) after."""
    # the level speech gate, as make_settings: these servers are sent tone stand-ins
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ELP_SPEECH_DETECTOR": "level", **(env or {})}
    command = args if args[0] != "python" else [sys.executable, *args[1:]]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process, timeout_s)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_http(url: str, process: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"process exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout_s} s")


# -- answers and errors ------------------------------------------------------------------------------
CLIP = wav_bytes(1.0, seed=1)


def clip_files(data: bytes = CLIP, **extra: bytes) -> dict[str, tuple[str, bytes, str]]:
    files = {"file": ("clip.wav", data, "audio/wav")}
    files.update({name: (f"{name}.wav", payload, "audio/wav") for name, payload in extra.items()})
    return files


def metric(app, name: str, labels: dict[str, str] | None = None) -> float:
    return app.state.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


async def assert_serving(client: httpx.AsyncClient) -> None:
    """A normal request right after an error still succeeds."""
    response = await client.post("/emotion", files=clip_files())
    assert response.status_code == 200, response.text
