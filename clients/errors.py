"""Typed client errors, one per error code of the HTTP contract (docs/API.md)."""

from __future__ import annotations

from typing import Any


class ELPClientError(Exception):
    """Any error answer of the server: ``status``, ``code`` and ``message`` from its error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class InvalidAudioError(ELPClientError):
    pass


class UnauthorizedError(ELPClientError):
    pass


class ForbiddenError(ELPClientError):
    """403: the server has no API key for a route that needs one, or refused a cross-site request."""


class RateLimitedError(ELPClientError):
    """429: too many verifications against enrolled speakers; retry after ``retry_after`` seconds."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class NotFoundError(ELPClientError):
    pass


class AdapterNotFoundError(NotFoundError):
    pass


class SpeakerNotFoundError(NotFoundError):
    pass


class PayloadTooLargeError(ELPClientError):
    pass


class UnsupportedMediaTypeError(ELPClientError):
    pass


class InvalidRequestError(ELPClientError):
    pass


class NoSpeechError(InvalidRequestError):
    """422 ``no_speech``: a (nearly) silent clip sent to a task that needs a voice (verification, enrolment)."""


class OverloadedError(ELPClientError):
    """503: retry after ``retry_after`` seconds (from the Retry-After header)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class RequestTimeoutError(ELPClientError):
    pass


class ServerError(ELPClientError):
    pass


ERRORS_BY_CODE: dict[str, type[ELPClientError]] = {
    "invalid_audio": InvalidAudioError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "rate_limited": RateLimitedError,
    "adapter_not_found": AdapterNotFoundError,
    "speaker_not_found": SpeakerNotFoundError,
    "not_found": NotFoundError,
    "payload_too_large": PayloadTooLargeError,
    "unsupported_media_type": UnsupportedMediaTypeError,
    "invalid_request": InvalidRequestError,
    "no_speech": NoSpeechError,
    "overloaded": OverloadedError,
    "timeout": RequestTimeoutError,
    "internal": ServerError,
}


def error_from_response(status: int, body: Any, headers: Any) -> ELPClientError:
    """Build the typed error for an error answer (falls back to the status when the body is odd)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(code, str):
        code = "internal" if status >= 500 else "invalid_request"
    message = message if isinstance(message, str) else f"HTTP {status}"
    error_class = ERRORS_BY_CODE.get(code, ServerError if status >= 500 else ELPClientError)
    if error_class in (OverloadedError, RateLimitedError):
        retry_after = headers.get("retry-after") if headers is not None else None
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return error_class(status, code, message, seconds)
    return error_class(status, code, message)
