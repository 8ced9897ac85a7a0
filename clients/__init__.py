"""Python client and ``elp-client`` CLI for the ELP speech server (contract: docs/API.md)."""

from clients.client import AsyncELPClient, ELPClient
from clients.errors import (
    AdapterNotFoundError,
    ELPClientError,
    ForbiddenError,
    InvalidAudioError,
    InvalidRequestError,
    NoSpeechError,
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
from clients.models import RESULT_TYPES, AdapterInfo, SpeakerInfo

__all__ = [
    "AdapterInfo",
    "AdapterNotFoundError",
    "AsyncELPClient",
    "ELPClient",
    "ELPClientError",
    "ForbiddenError",
    "InvalidAudioError",
    "InvalidRequestError",
    "NoSpeechError",
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
]

# One result type per registered task (AsrResult, VerifyResult, ...), exported beside the client.
globals().update({cls.__name__: cls for cls in RESULT_TYPES.values()})
__all__ += [cls.__name__ for cls in RESULT_TYPES.values()]
