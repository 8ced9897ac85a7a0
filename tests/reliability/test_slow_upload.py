"""Slow-loris uploads: a client that sends the headers and then trickles the body, or stops sending,
gets a 408 once ``upload_timeout_s`` has passed and its connection is closed; the server keeps
serving, and normal (or slightly slow) uploads, and the body limit's 413s, are unaffected."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from server.middleware import UploadTimeoutMiddleware
from tests.reliability.support import assert_error, live_server, multipart, raw_request
from tests.server.helpers import wav_bytes

TIMEOUT_S = 0.5
LIMIT = 1024 * 1024
CLIP = wav_bytes(1.0, seed=31)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}
CONTENT_TYPE = b"Content-Type: multipart/form-data; boundary=elpboundary\r\n"
BODY = multipart([("file", "clip.wav", CLIP, {"Content-Type": "audio/wav"})])


def head(content_length: int, path: str = "/emotion") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + CONTENT_TYPE
            + f"Content-Length: {content_length}\r\n\r\n".encode())


@pytest.fixture(scope="module")
def port(tiny_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real uvicorn for the module: upload timeout 0.5 s, body limit 1 MiB."""
    backbone, store = tiny_store
    extra = ("--upload-timeout-s", str(TIMEOUT_S), "--max-upload-bytes", str(LIMIT))
    with live_server(backbone, store, tmp_path_factory.mktemp("slow-upload"), *extra) as (server_port, _):
        yield server_port


def slow_client(port: int, chunks: list[bytes], *, every_s: float = 0.0,
                wait_s: float = 10.0) -> tuple[int | None, bytes, float, bool]:
    """Send the chunks ``every_s`` apart (then stall) while reading; stop at a complete answer.
    Returns (status, raw answer, seconds from the last header byte to the answer, closed after it)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.settimeout(0.02)
        sock.sendall(chunks[0])
        started = time.monotonic()
        pending = list(chunks[1:])
        next_send = started + every_s
        while time.monotonic() - started < wait_s and not _complete(answer):
            if pending and time.monotonic() >= next_send:
                try:
                    sock.sendall(pending.pop(0))
                except OSError:
                    pending = []
                next_send += every_s
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            answer += data
        elapsed = time.monotonic() - started
        closed = _closed(sock, within_s=3.0)
    status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, answer, elapsed, closed


def _complete(answer: bytes) -> bool:
    head_part, separator, body = answer.partition(b"\r\n\r\n")
    for line in head_part.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return bool(separator) and len(body) >= int(line.split(b":")[1])
    return False


def _closed(sock: socket.socket, within_s: float) -> bool:
    """True when the server closes (EOF or reset) within ``within_s``, sending nothing more."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
        return False  # more bytes after a complete answer: not what we expect
    return False


def as_response(status: int | None, answer: bytes) -> httpx.Response:
    assert status is not None, answer[:300]
    return httpx.Response(status, content=answer.partition(b"\r\n\r\n")[2])


@pytest.mark.slow
def test_a_stalled_upload_gets_408_and_the_connection_closes(port: int) -> None:
    """Declares 100000 bytes, sends 200 of them, then nothing: 408 soon after the timeout, then closed."""
    status, answer, elapsed, closed = slow_client(port, [head(100_000) + BODY[:200]])
    assert_error(as_response(status, answer), 408, "request_timeout")
    assert b"connection: close" in answer.lower(), answer[:300]
    assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 4, elapsed
    assert closed


@pytest.mark.slow
def test_a_trickling_upload_is_cut_off_at_the_deadline(port: int) -> None:
    """A client that keeps sending 16 bytes every 50 ms never finishes in time: the deadline is for the
    whole body, not between reads."""
    body = BODY[: 16 * 200]
    chunks = [head(len(BODY))] + [body[i : i + 16] for i in range(0, len(body), 16)]
    status, answer, elapsed, closed = slow_client(port, chunks, every_s=0.05)
    assert_error(as_response(status, answer), 408, "request_timeout")
    assert elapsed < TIMEOUT_S + 4, elapsed
    assert closed


@pytest.mark.slow
def test_the_server_keeps_serving_while_and_after_clients_stall(port: int) -> None:
    results: list[tuple[int | None, bytes, float, bool]] = []
    stalled = [threading.Thread(target=lambda: results.append(slow_client(port, [head(100_000) + BODY[:100]])))
               for _ in range(4)]
    for thread in stalled:
        thread.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        for thread in stalled:
            thread.join(timeout=15)
    assert [r[0] for r in results] == [408] * 4, [r[1][:200] for r in results]
    assert all(r[3] for r in results)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    response = httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_normal_and_slightly_slow_uploads_under_the_timeout_succeed(port: int) -> None:
    response = httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30)
    assert response.status_code == 200, response.text
    # the body in four pieces 50 ms apart: slow, but complete well within 0.5 s
    quarter = len(BODY) // 4 + 1
    pieces = [BODY[i : i + quarter] for i in range(0, len(BODY), quarter)]
    status, answer, _, _ = slow_client(port, [head(len(BODY)) + pieces[0], *pieces[1:]], every_s=0.05)
    assert status == 200, answer[:500]
    assert b'"label"' in answer, answer[:500]


@pytest.mark.slow
def test_the_body_limit_still_answers_first(port: int) -> None:
    """A client that lies about (or leaves out) Content-Length still gets the immediate 413, not a 408."""
    started = time.monotonic()
    status, answer = raw_request(port, head(100_000_000_000), [b"x" * 1000])
    assert status == 413 and b"payload_too_large" in answer, answer[:300]
    chunked = b"POST /emotion HTTP/1.1\r\nHost: x\r\n" + CONTENT_TYPE + b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    status, answer = raw_request(port, chunked, (chunk for _ in range(2 * LIMIT // 65536 + 1)))
    assert status == 413 and b"payload_too_large" in answer, answer[:300]
    assert time.monotonic() - started < 10


# ASGI level: what the middleware does where uvicorn cannot easily show it


def _stalling_receive(first: list[dict]) -> object:
    queue = list(first)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await anyio.sleep(3600)  # a client that never sends again
        raise AssertionError("unreachable")

    return receive


async def _through_middleware(app, more_body: bool) -> list[dict]:
    """Run ``app`` behind a 0.2 s upload timeout on a body of b"abc" that then stalls; the messages sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = UploadTimeoutMiddleware(app, timeout_s=0.2)
    receive = _stalling_receive([{"type": "http.request", "body": b"abc", "more_body": more_body}])
    with anyio.fail_after(5):
        await middleware({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send)
    return sent


@pytest.mark.anyio
async def test_once_the_response_started_a_timeout_only_aborts_it() -> None:
    seen: list[dict] = []

    async def app(scope, receive, send) -> None:  # answers first, reads the body after (a streaming echo)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(await receive())
        seen.append(await receive())  # stalls: the middleware must answer disconnect, not hang
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    sent = await _through_middleware(app, more_body=True)
    assert seen[1] == {"type": "http.disconnect"}
    # no second start, no 408, and the body is never completed: the server drops the connection
    assert [m["type"] for m in sent] == ["http.response.start"], sent


@pytest.mark.anyio
async def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    async def app(scope, receive, send) -> None:
        assert (await receive())["more_body"] is False
        with anyio.move_on_after(0.4):  # twice the timeout: the wait for a disconnect must not end in a 408
            await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = await _through_middleware(app, more_body=False)
    assert [m.get("status") for m in sent[:1]] == [200], sent


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import Settings

    monkeypatch.setenv("ELP_UPLOAD_TIMEOUT_S", "2.5")
    assert Settings().upload_timeout_s == 2.5
    monkeypatch.delenv("ELP_UPLOAD_TIMEOUT_S")
    assert Settings().upload_timeout_s == 30.0
