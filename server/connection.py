"""Connection hygiene in the server process itself: a header timeout uvicorn lacks.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``), but has no timeout for
*receiving* a request head: a client that opens connections and trickles header bytes (slowloris),
or sends nothing at all, holds them forever. ``header_timeout_protocol`` returns uvicorn's HTTP
protocol with that timer added: from the connection's start, or from the first byte of each next
request on a kept-alive connection, the whole request head must arrive within ``header_timeout_s``,
else the client gets a 408 (the one JSON error shape) and the connection is closed. A head over
``max_header_bytes`` gets a 431, whether it arrives in one piece or in many. The body has its own
deadline (``UploadTimeoutMiddleware``). In-process rather than only in a proxy, so every deployment
has it; a reverse proxy in front (docs/server.md#security) adds per-client connection limits on top.

The protocol is uvicorn's httptools one (llhttp, in C) where ``httptools`` is installed, as the
package requires: the pure-Python h11 parser cost ~8% of a saturated server's event loop (py-spy,
benchmarks/README.md "Host time per request"), and on a GPU that loop's one interpreter is what
limits requests a second. h11 remains the fallback where no httptools wheel exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from server.errors import error_body

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; a platform without its wheel
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol

logger = logging.getLogger("server.connection")


def _error_answer(status: str, code: str, message: str) -> bytes:
    body = json.dumps(error_body(code, message))
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n{body}").encode()


class HeaderTimeoutProtocol(_UvicornProtocol):
    """uvicorn's HTTP protocol plus a deadline and a size bound for each request head; see the module
    docstring."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 65536

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_seen, self._head_tail = 0, b""
        super().connection_made(transport)
        self._arm_header_timer()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            if self._header_timer is None:
                self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
            if self._head_too_large(data):
                self._refuse("431 Request Header Fields Too Large", "headers_too_large",
                             f"request head larger than {self.max_header_bytes} bytes")
                return
        super().data_received(data)
        if not self._between_requests() or self._upgraded():
            self._disarm_header_timer()  # the head is complete: a request cycle runs, or a WebSocket took over

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _upgraded(self) -> bool:
        """Whether the connection became a WebSocket (uvicorn hands the transport to its WS protocol): no
        request head comes any more, and a 408 written now would corrupt the stream's frames."""
        return self.transport.get_protocol() is not self

    def _head_too_large(self, data: bytes) -> bool:
        """Bytes of the request head so far (up to its blank line, if in ``data``) past the limit."""
        window = self._head_tail + data
        end = window.find(b"\r\n\r\n")
        size = self._head_seen + (end + 4 - len(self._head_tail) if end >= 0 else len(data))
        self._head_seen += len(data)
        self._head_tail = window[-3:]
        return size > self.max_header_bytes

    def _refuse(self, status: str, code: str, message: str) -> None:
        self._disarm_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_error_answer(status, code, message))
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._head_seen, self._head_tail = 0, b""
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._between_requests() or self._upgraded():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        logger.info("%s: request head not received within %g s; closing the connection", client,
                    self.header_timeout_s)
        self._refuse("408 Request Timeout", "request_timeout",
                     f"request headers not received within {self.header_timeout_s:g} s")


def header_timeout_protocol(header_timeout_s: float, max_header_bytes: int) -> type[Any]:
    """The protocol class for ``uvicorn.run(http=...)`` with these limits."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})
