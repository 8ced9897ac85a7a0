"""Live streams from Python: ``stream(url, "asr", audio)`` yields the server's messages as they come
(``astream``: the same for asyncio).

``audio`` is a file (path, bytes or file object: read, mixed to mono and resampled to 16 kHz, then sent in
``frame_s`` pieces, at the pace of speech with ``realtime=True``) or any iterable of float sample arrays
already at 16 kHz (a microphone callback's queue). A sender thread sends while the caller reads, so a long
stream never waits on its own unread answers. Messages are dicts (docs/API.md, "Live streams"): ``ready``,
``partial`` (tasks that give them), ``result``, and ``end``; an ``error`` message raises the client's typed
error of its code (``status`` 0: a stream has no HTTP status).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np

from clients.errors import ERRORS_BY_CODE, ELPClientError

RATE = 16000
FileInput = str | os.PathLike | bytes | IO[bytes]


def read_mono_16k(audio: FileInput) -> np.ndarray:
    """A sound file's samples as 16 kHz mono float32."""
    import soundfile as sf
    from scipy.signal import resample_poly

    source = io.BytesIO(bytes(audio)) if isinstance(audio, bytes | bytearray) else audio
    if isinstance(source, str | os.PathLike):
        source = Path(source)
    samples, rate = sf.read(source, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != RATE:
        divisor = np.gcd(int(rate), RATE)
        mono = resample_poly(mono, RATE // divisor, int(rate) // divisor)
    return mono.astype(np.float32)


def file_frames(samples: np.ndarray, frame_s: float = 0.1, realtime: bool = False) -> Iterator[np.ndarray]:
    """``samples`` in pieces of ``frame_s``; with ``realtime``, each piece no sooner than it would be spoken."""
    step = max(1, int(frame_s * RATE))
    started = time.monotonic()
    for at in range(0, len(samples), step):
        if realtime:
            time.sleep(max(0.0, started + at / RATE - time.monotonic()))
        yield samples[at:at + step]


def stream_url(base_url: str, endpoint: str, **parameters: Any) -> str:
    """``http://host:8000`` -> ``ws://host:8000/<endpoint>/stream?...`` (https -> wss)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in parameters.items()
                       if v is not None})
    return urlunsplit((scheme, parts.netloc, f"{parts.path}/{endpoint}/stream", query, ""))


def _is_file(audio: Any) -> bool:
    return isinstance(audio, str | os.PathLike | bytes | bytearray) or hasattr(audio, "read")


def _pcm16(frame: np.ndarray) -> bytes:
    return np.clip(np.round(np.asarray(frame, dtype=np.float32) * 32768), -32768, 32767).astype("<i2").tobytes()


def stream(base_url: str, endpoint: str, audio: FileInput | Iterable[np.ndarray], *, adapter: str | None = None,
           partials: bool = True, realtime: bool = False, frame_s: float = 0.1, api_key: str | None = None,
           open_timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """Stream ``audio`` to ``/<endpoint>/stream`` and yield every message the server sends, ``end`` last."""
    from websockets.sync.client import connect

    frames = file_frames(read_mono_16k(audio), frame_s, realtime) if _is_file(audio) else audio
    url = stream_url(base_url, endpoint, adapter=adapter, partials=partials)
    headers = {"X-API-Key": api_key} if api_key else None
    with connect(url, additional_headers=headers, open_timeout=open_timeout, max_size=2**22) as ws:
        failure: list[BaseException] = []
        sender = threading.Thread(target=_send_all, args=(ws, frames, failure), daemon=True)
        first = _message(ws.recv())
        yield first
        sender.start()
        try:
            for raw in ws:
                message = _message(raw)
                yield message
                if message["type"] == "end":
                    break
        finally:
            sender.join(timeout=1.0)
    if failure:
        raise failure[0]


async def astream(base_url: str, endpoint: str, audio: FileInput | Iterable[np.ndarray] | AsyncIterable[np.ndarray],
                  *, adapter: str | None = None, partials: bool = True, realtime: bool = False, frame_s: float = 0.1,
                  api_key: str | None = None, open_timeout: float = 30.0) -> AsyncIterator[dict[str, Any]]:
    """:func:`stream` for asyncio: ``audio`` may also be an async iterable of 16 kHz float arrays."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def frames() -> AsyncIterator[np.ndarray]:
        if _is_file(audio):
            samples, step, started = read_mono_16k(audio), max(1, int(frame_s * RATE)), time.monotonic()
            for at in range(0, len(samples), step):
                if realtime:
                    await asyncio.sleep(max(0.0, started + at / RATE - time.monotonic()))
                yield samples[at:at + step]
        elif hasattr(audio, "__aiter__"):
            async for frame in audio:
                yield frame
        else:
            for frame in audio:
                yield frame

    async def send_all() -> None:
        with contextlib.suppress(ConnectionClosed):  # the server ended the stream: its error message says why
            async for frame in frames():
                await ws.send(_pcm16(frame))
            await ws.send(json.dumps({"type": "end"}))

    url = stream_url(base_url, endpoint, adapter=adapter, partials=partials)
    headers = {"X-API-Key": api_key} if api_key else None
    async with connect(url, additional_headers=headers, open_timeout=open_timeout, max_size=2**22) as ws:
        yield _message(await ws.recv())
        sender = asyncio.create_task(send_all())
        try:
            async for raw in ws:
                message = _message(raw)
                yield message
                if message["type"] == "end":
                    break
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender  # the caller's audio source failing raises here


def _send_all(ws: Any, frames: Iterable[np.ndarray], failure: list[BaseException]) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        for frame in frames:
            ws.send(_pcm16(frame))
        ws.send(json.dumps({"type": "end"}))
    except ConnectionClosed:
        pass  # the server ended the stream: its error message says why
    except BaseException as error:  # the caller's audio source failed: end the stream, raise it there
        failure.append(error)
        ws.close()


def _message(raw: str | bytes) -> dict[str, Any]:
    message = json.loads(raw)
    if message.get("type") == "error":
        error = message.get("error", {})
        code, text = error.get("code", "internal"), error.get("message", "")
        raise ERRORS_BY_CODE.get(code, ELPClientError)(0, code, text)
    return message
