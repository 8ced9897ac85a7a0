"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks on client disconnects and streams).

``BodyLimitMiddleware`` enforces the upload limit while the body is read, so a client that sends no
Content-Length, or lies in it, is cut off at the limit instead of filling memory or disk.
``RequestMetricsMiddleware`` counts every answer, errors included, by endpoint and status code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from server.errors import GENERIC_INTERNAL_MESSAGE, error_body
from server.metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("server.middleware")

_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Read the whole request body up to ``max_bytes`` before the app sees it; 413 beyond."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        too_large = f"request body is larger than the {self.max_bytes} byte limit"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, 413, "payload_too_large", too_large)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # client left: nothing to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: waits for http.disconnect

        await self.app(scope, replay, send)


class RequestMetricsMiddleware:
    """Outermost layer: latency and status of every HTTP answer."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
                self._record(scope, status["code"], started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not status["sent"]:
                self._record(scope, 500, started)
                await _send_error(send, 500, "internal", GENERIC_INTERNAL_MESSAGE)
                return
            raise

    def _record(self, scope: Scope, code: int, started: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "name", None) or "unmatched"
        self.metrics.requests.labels(endpoint, str(code)).inc()
        self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)
