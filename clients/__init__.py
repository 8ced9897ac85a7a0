"""Python client and ``elp-client`` CLI for the ELP speech server (contract: docs/API.md)."""

from clients.client import AsyncELPClient, ELPClient
from clients.errors import (
    AdapterNotFoundError,
    ELPClientError,
    ForbiddenError,
    InvalidAudioError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SpeakerNotFoundError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from clients.models import AdapterInfo, AsrResult, EmotionResult, IntentResult, SpeakerInfo, VerifyResult

__all__ = [
    "AdapterInfo",
    "AdapterNotFoundError",
    "AsrResult",
    "AsyncELPClient",
    "ELPClient",
    "ELPClientError",
    "EmotionResult",
    "ForbiddenError",
    "IntentResult",
    "InvalidAudioError",
    "InvalidRequestError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "SpeakerInfo",
    "SpeakerNotFoundError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "VerifyResult",
]
