"""Helpers shared by the reliability tests: the contract's error shape, hostile uploads, raw HTTP
over a socket (for clients that lie), and a real server process."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from tests.server.helpers import free_port, server_process, wav_bytes

ERROR_CODES = {400: "invalid_audio", 401: "unauthorized", 403: "forbidden", 404: "adapter_not_found",
               408: "request_timeout", 413: "payload_too_large", 429: "rate_limited",
               415: "unsupported_media_type", 422: "invalid_request", 503: "overloaded", 504: "timeout"}


def assert_error_shape(response: httpx.Response) -> dict:
    """``{"error": {"code", "message"}}`` and no stack trace, whatever the status."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    assert "Traceback" not in body["error"]["message"] and 'File "' not in body["error"]["message"], body
    return body["error"]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    error = assert_error_shape(response)
    assert error["code"] == (code or ERROR_CODES[status]), error
    return error


def encode(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def wav_claiming_data_bytes(real: bytes, claimed_data_bytes: int) -> bytes:
    """A WAV whose data-chunk size field says ``claimed_data_bytes`` whatever follows it."""
    position = real.index(b"data") + 4
    return real[:position] + struct.pack("<I", claimed_data_bytes) + real[position + 4 :]


def zip_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("clip.wav", wav_bytes(0.5))
    return buffer.getvalue()


def multipart(fields: list[tuple[str, str, bytes, dict[str, str]]], boundary: str = "elpboundary") -> bytes:
    """Hand-built multipart body: (name, filename, payload, extra part headers) per part."""
    out = b""
    for name, filename, payload, headers in fields:
        out += f"--{boundary}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        for key, value in headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + payload + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def raw_request(port: int, head: bytes, body_chunks: Iterator[bytes] | list[bytes] = (), *,
                read_timeout_s: float = 20.0) -> tuple[int | None, bytes]:
    """Send ``head`` and the chunks (stopping quietly if the server closes), then read the answer.
    Returns (status or None if the server answered nothing, raw answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while b"\r\n\r\n" not in answer or not _complete(answer):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    if not answer.startswith(b"HTTP/1.1 "):
        return None, answer
    return int(answer[9:12]), answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def server_args(backbone: Path, store: Path, tmp: Path, port: int, *extra: str) -> list[str]:
    return ["python", "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store),
            "--speakers-dir", str(tmp / "speakers"), "--port", str(port), "--log-level", "warning", *extra]


@contextlib.contextmanager
def live_server(backbone: Path, store: Path, tmp: Path, *extra: str) -> Iterator[tuple[int, object]]:
    """A real ``python -m server`` on a free port: (port, Popen)."""
    port = free_port()
    with server_process(server_args(backbone, store, tmp, port, *extra), port=port) as process:
        yield port, process


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
