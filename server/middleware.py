"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks on client disconnects and streams).

``BodyLimitMiddleware`` enforces the upload limit while the body is read, so a client that sends no
Content-Length, or lies in it, is cut off at the limit instead of filling memory or disk.
``UploadTimeoutMiddleware`` bounds how long the body may take to arrive (uvicorn has no body read
timeout), so a slow-loris client that trickles or stalls gets a 408 instead of holding a connection.
``RequestMetricsMiddleware`` counts every answer, errors included, by endpoint and status code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.routing import Match

from server.errors import ERROR_CODES, GENERIC_INTERNAL_MESSAGE, error_body
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


class UploadTimeoutMiddleware:
    """The whole request body must arrive within ``timeout_s`` of the app's first ``receive()``.

    Past the deadline the app is told the client left (``http.disconnect``, so it stops reading),
    whatever it sends from then on is dropped, and the client gets a 408 ``request_timeout`` with
    ``Connection: close``; if the response had already started, it is left unfinished, which makes
    the server drop the connection. Reads after the body is complete (waiting for a disconnect) are
    not timed.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"deadline": None, "body_done": False, "timed_out": False, "started": False}

        async def timed_receive() -> Message:
            if state["timed_out"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:
                return await receive()
            if state["deadline"] is None:
                state["deadline"] = time.monotonic() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, state["deadline"] - time.monotonic()))
            except asyncio.TimeoutError:
                state["timed_out"] = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message: Message) -> None:
            if state["timed_out"]:
                return  # the client gets the 408 (or a dropped connection), not what the app makes of it
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not state["timed_out"]:
                raise
            # e.g. a body parser that raises on the disconnect we made up: the timeout is the answer
        if not state["timed_out"]:
            return
        logger.warning("%s %s: request body not received within %.3g s", scope.get("method"), scope.get("path"),
                       self.timeout_s)
        if not state["started"]:
            await _send_error(send, 408, "request_timeout",
                              f"request body not received within {self.timeout_s:g} s")


def _route_name(scope: Scope) -> str:
    """The endpoint of an answer given before routing (the body limit's 413, the upload timeout's 408):
    the route whose path matches, so those count where they happened; "unmatched" for unknown paths."""
    return _matching_name(getattr(scope.get("app"), "router", None), scope) or "unmatched"


def _matching_name(router: Any, scope: Scope) -> str | None:
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        name = getattr(route, "name", None)
        if name:
            return name
        # an included router (FastAPI wraps it): look among its own routes
        nested = getattr(route, "original_router", None) or getattr(route, "router", None)
        name = _matching_name(nested, scope) if nested is not None else None
        if name:
            return name
    return None


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
            elif message["type"] == "http.response.body" and status["code"] >= 400 and not status.get("error"):
                status["error"] = True  # an error answer is one small JSON body: its first chunk
                self._record_error(scope, message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not status["sent"]:
                self._record(scope, 500, started)
                self.metrics.errors.labels(_endpoint(scope), "internal").inc()
                await _send_error(send, 500, "internal", GENERIC_INTERNAL_MESSAGE)
                return
            raise

    def _record(self, scope: Scope, code: int, started: float) -> None:
        endpoint = _endpoint(scope)
        self.metrics.requests.labels(endpoint, str(code)).inc()
        self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)

    def _record_error(self, scope: Scope, body: bytes) -> None:
        """Count an error answer's ``error.code`` (one of the server's own codes, else ``other``); a status
        answer that is no error body (``/readyz``'s 503 while starting) is not an error answer."""
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return
        self.metrics.errors.labels(_endpoint(scope), code if code in ERROR_CODES else "other").inc()


def _endpoint(scope: Scope) -> str:
    return getattr(scope.get("route"), "name", None) or _route_name(scope)
