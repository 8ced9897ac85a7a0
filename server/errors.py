"""The one error module: domain exceptions and their HTTP mapping.

Every error leaves the server as ``{"error": {"code": str, "message": str}}`` with the status code
of docs/API.md, including FastAPI's own validation errors and unknown routes. Anything unexpected
becomes a generic 500 ``internal``; the details go to the log, never to the client.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("server.errors")

GENERIC_INTERNAL_MESSAGE = "internal server error; the request was not processed"


class ServerError(Exception):
    """Base of every error the server answers on purpose."""

    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidAudioError(ServerError):
    status_code, code = 400, "invalid_audio"


class UnauthorizedError(ServerError):
    status_code, code = 401, "unauthorized"

    def __init__(self, message: str = "missing or wrong API key") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(ServerError):
    """No key configured for a route that needs one, or a cross-site request to a state-changing route."""

    status_code, code = 403, "forbidden"


class RateLimitedError(ServerError):
    """Too many attempts from one client (verification against an enrolled speaker)."""

    status_code, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(message, headers={"Retry-After": str(self.retry_after_s)})


class AdapterNotFoundError(ServerError):
    status_code, code = 404, "adapter_not_found"


class SpeakerNotFoundError(ServerError):
    """Addition to the contract: an enrolled speaker id that does not exist (for this adapter)."""

    status_code, code = 404, "speaker_not_found"


class PayloadTooLargeError(ServerError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMediaTypeError(ServerError):
    status_code, code = 415, "unsupported_media_type"


class InvalidRequestError(ServerError):
    status_code, code = 422, "invalid_request"


class NoSpeechError(ServerError):
    """A clip with no voice in it sent to a task whose answer needs one (speaker verification, enrolment):
    silence would otherwise embed like silence and "match"."""

    status_code, code = 422, "no_speech"


class NonFiniteOutputError(ServerError):
    """The guard after the model: an answer with NaN/Inf is never sent (nor a ``null``). Bad input is
    refused as 400 before the model, so reaching this means the clip or the adapter set defeats the
    model numerically; the request is answered as unprocessable, not as a server crash."""

    status_code, code = 422, "non_finite_output"


class OverloadedError(ServerError):
    """Queue full, still starting or shutting down: the client should come back later."""

    status_code, code = 503, "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(message, headers={"Retry-After": str(self.retry_after_s)})


class RequestTimeoutError(ServerError):
    status_code, code = 504, "timeout"


class InternalError(ServerError):
    """A 500 whose message is safe and useful to show (e.g. a corrupt adapter set)."""

    status_code, code = 500, "internal"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status_code, headers=headers)


_HTTP_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "overloaded",
    504: "timeout",
}


def _describe_validation_errors(exc: RequestValidationError) -> str:
    """Short human message; never echoes the submitted values back."""
    parts = []
    for err in exc.errors()[:5]:
        location = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{location or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


async def _server_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServerError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", _describe_validation_errors(exc))


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_STATUS_CODES.get(exc.status_code, "internal" if exc.status_code >= 500 else "invalid_request")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    return error_response(exc.status_code, code, message, getattr(exc, "headers", None))


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", GENERIC_INTERNAL_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one JSON error shape."""
    app.add_exception_handler(ServerError, _server_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)


def _codes_of(cls: type[ServerError]) -> set[str]:
    return {cls.code}.union(*(_codes_of(sub) for sub in cls.__subclasses__()))


#: every ``error.code`` this server answers with: the label values of ``elp_errors_total`` (bounded)
ERROR_CODES: frozenset[str] = frozenset(
    _codes_of(ServerError) | set(_HTTP_STATUS_CODES.values())
    | {"not_found", "method_not_allowed", "request_timeout", "headers_too_large"}
)
