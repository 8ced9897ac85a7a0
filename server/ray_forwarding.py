"""Requests forwarded from the Ray ingress to a replica's in-process server app, and answers back.

A replica runs the single server's ASGI app without a socket: :func:`stream_asgi` feeds it the forwarded request and
hands back what it sends, as it sends it (an event stream's events one by one); :func:`call_asgi` collects an answer
whole. :func:`relayed` is the ingress' side of a streamed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from server.openai_formats import sse_event

logger = logging.getLogger("server.ray")

#: replica failures after which the same request may go to another replica (inference is idempotent)
REPLICA_GONE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


@dataclass
class ForwardedRequest:
    """An HTTP request as the ingress received it, for a replica's in-process app."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None = None


@dataclass
class ForwardedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    replica_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


async def stream_asgi(app: Any, request: ForwardedRequest) -> AsyncIterator[tuple[int, list] | bytes]:
    """Run one request through an ASGI app in this process (the replica's own server app), its answer as it is
    made: ``(status, headers)`` first, then each body chunk the app sends (an event stream's events one by one).
    Closing the iterator early is the client leaving: the app sees ``http.disconnect`` and stops."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
        "scheme": "http", "path": request.path, "raw_path": request.path.encode(), "root_path": "",
        "query_string": request.query_string, "headers": request.headers,
        "client": request.client or ("127.0.0.1", 0), "server": ("elp-replica", 80),
    }
    parts: asyncio.Queue[tuple[int, list] | bytes | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await gone.wait()  # the client stays connected until the answer is complete or it is closed
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            parts.put_nowait((message["status"], list(message.get("headers", []))))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                parts.put_nowait(message["body"])
            if not message.get("more_body", False):
                parts.put_nowait(None)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            parts.put_nowait(None)

    task = asyncio.create_task(run())
    started = False
    try:
        while (part := await parts.get()) is not None:
            started = started or isinstance(part, tuple)
            yield part
        if not started:  # the app ended without an answer (the server's own handlers make one for every error)
            yield 500, []
    finally:
        gone.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)


async def call_asgi(app: Any, request: ForwardedRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """:func:`stream_asgi`, the answer collected whole."""
    status, headers, chunks = 500, [], []
    async for part in stream_asgi(app, request):
        if isinstance(part, tuple):
            status, headers = part
        else:
            chunks.append(part)
    return status, headers, b"".join(chunks)


async def relayed(parts: Any) -> AsyncIterator[bytes]:
    """A replica's body chunks as they come; the replica's generator is cancelled if the client leaves first."""
    try:
        async for part in parts:
            yield part
    except REPLICA_GONE as exc:
        logger.warning("replica gone in the middle of an event stream: %s", type(exc).__name__)
        yield sse_event({"type": "error", "error": {"code": "overloaded",
                                                    "message": "the replica serving this stream went away; retry"}})
    finally:
        parts.cancel()
