"""Who may do what: the API key, cross-site request refusal, the verification rate limit, the bind check.

Open without a key: the task routes (/asr, /emotion, /intent, /verify with two clips) and their live
streams (which refuse other sites' pages: ``is_foreign_origin``), health, readiness, metrics and the
adapter listing; they change no state and reveal no voiceprint. Behind the
key: adapter load/unload, enrolment, speaker listing/deletion, /verify against an enrolled speaker,
/identify and /diarize naming its speakers (which name enrolled speakers; these count against the per-client
rate limit).
With no key configured those answer 403 (saying how to set one) unless ``insecure_open_admin``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import urlsplit

from fastapi import Request

from server.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from server.settings import Settings

logger = logging.getLogger("server.security")

NO_KEY_MESSAGE = (
    "this route needs an API key and the server has none: start it with ELP_API_KEY=<secret> (or --api-key) "
    "and send the key as 'X-API-Key: <secret>' or 'Authorization: Bearer <secret>' "
    "(for local development only, ELP_INSECURE_OPEN_ADMIN=true opens these routes without a key)"
)
#: methods that change state; a foreign Origin is refused on the key's routes for these
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def offered_key(request: Request) -> str | None:
    """The key a client sent: ``X-API-Key``, else ``Authorization: Bearer``; an empty X-API-Key counts as
    not sent, so it cannot shadow a valid bearer token."""
    offered = request.headers.get("x-api-key") or None
    authorization = request.headers.get("authorization", "")
    if offered is None and authorization[:7].lower() == "bearer ":
        offered = authorization[7:].strip() or None
    return offered


def require_api_key(request: Request) -> None:
    """Dependency of the key's routes: cross-site check, then 403 without a configured key (unless the
    development switch is on), 401 for a missing or wrong key."""
    check_same_origin(request)
    settings: Settings = request.app.state.settings
    key = settings.api_key
    if key is None:
        if settings.insecure_open_admin:
            return
        raise ForbiddenError(NO_KEY_MESSAGE)
    offered = offered_key(request)
    if offered is None or not hmac.compare_digest(offered.encode(), key.get_secret_value().encode()):
        raise UnauthorizedError()


def check_same_origin(request: Request) -> None:
    """CSRF: a state-changing request that a browser sent from another site carries that site's Origin.
    Refuse it (403) unless the Origin is this server's own; clients without an Origin (curl, SDKs) pass.
    No CORS headers are ever sent, so cross-site pages cannot read answers or send the key header."""
    origin = request.headers.get("origin")
    if origin is not None and request.method in _STATE_CHANGING and is_foreign_origin(origin, request.headers):
        raise ForbiddenError(f"cross-site request refused: Origin {origin[:100]!r} is not this server")


def is_foreign_origin(origin: str, headers: Mapping[str, str]) -> bool:
    """Whether a browser sent the request from a page of another site (or an opaque one): the host in its
    ``Origin`` is not the ``Host`` the request was sent to. Live streams (WebSockets, which CORS does not guard) refuse
    such pages outright, so no other site can listen through a user's server."""
    parts = urlsplit(origin)
    return (origin == "null" or parts.scheme not in ("http", "https")
            or parts.netloc.lower() != headers.get("host", "").lower())


class TokenBucketLimiter:
    """Per-client token buckets (``rate_per_s`` sustained, ``burst`` at once), at most ``max_clients``
    remembered (least recently seen forgotten first), so the table stays bounded under address churn."""

    def __init__(self, rate_per_s: float, burst: int, *, max_clients: int = 4096) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until the next token."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate_per_s
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_identity(request: Request) -> str:
    """Rate-limit key: the peer address (behind a proxy, the proxy: rate-limit per user there)."""
    return request.client.host if request.client is not None else "unknown"


def limit_speaker_verification(request: Request) -> None:
    """429 with Retry-After once a client spent its verification attempts against enrolled speakers."""
    limiter: TokenBucketLimiter = request.app.state.verify_limiter
    wait = limiter.take(client_identity(request))
    if wait > 0:
        raise RateLimitedError(
            f"too many verifications against enrolled speakers from this client; retry in {math.ceil(wait)} s",
            retry_after_s=wait,
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a LAN address, a name) is reachable."""
    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(settings: Settings) -> str | None:
    """Why the server must not start as configured (one log line), or None."""
    if settings.api_key is not None or settings.allow_unauthenticated_bind or is_loopback(settings.host):
        return None
    return (f"refusing to listen on {settings.host} without an API key: set ELP_API_KEY=<secret> (or --api-key), "
            "or bind 127.0.0.1, or set ELP_ALLOW_UNAUTHENTICATED_BIND=true when something in front authenticates")
