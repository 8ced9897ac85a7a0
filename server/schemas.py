"""Response models: they document the contract in OpenAPI (/docs) and shape every answer."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, Field, create_model

from elp.tasks import TaskSpec


class Timings(BaseModel):
    decode: float = Field(description="decoding + resampling the upload(s), ms")
    queue: float = Field(description="waiting for a batch, ms")
    inference: float = Field(description="the model call of the batch, ms")
    total: float = Field(description="whole request inside the server, ms")


class TaskAnswer(BaseModel):
    adapter: str = Field(description="adapter id and version (content hash prefix): id@sha256[:12]")
    duration_s: float = Field(description="duration of the clip in `file`, seconds")
    timings_ms: Timings


@functools.cache
def answer_model(spec: TaskSpec) -> type[TaskAnswer]:
    """``<Title>Answer``: the fields every task answer has, then the task's own (``TaskSpec.answer_fields``)."""
    return create_model(f"{spec.title}Answer", __base__=(spec.answer_fields, TaskAnswer), __module__=__name__)


class AdapterEntry(BaseModel):
    """One row of ``GET /adapters``: the only listing model of the server (the store fills the file
    facts, the service ``resident`` and ``default``); ``clients.models.AdapterInfo`` mirrors it,
    checked field by field in tests/clients/test_listing_model.py."""

    id: str
    task: str | None
    backbone: dict[str, Any] | None
    num_params: int | None
    size_bytes: int | None
    sha256: str | None = Field(description="version: content hash (weights + answer-changing config)")
    resident: bool
    default: bool
    error: str | None = Field(None, description="why the set cannot be served (corrupt files), if so")


class AdapterAction(BaseModel):
    id: str
    resident: bool
    adapter: str | None = Field(None, description="id@version now resident")


class SpeakerEntry(BaseModel):
    speaker: str
    adapter: str = Field(description="verification adapter id@version the embedding belongs to")
    num_clips: int
    total_duration_s: float
    created_at: float = Field(description="unix time")


class EnrolmentEntry(SpeakerEntry):
    """An enrolment's answer: the stored entry and how well its clips agree (two clips or more)."""

    clip_scores: list[float] | None = Field(
        None, description="each clip's score against the mean of the other clips (2 decimals), upload order")
    outlier_clips: list[int] | None = Field(
        None, description="clips (0-based) scoring under the set's threshold against the others: another "
                          "speaker or a poor recording? The enrolment is stored all the same; re-enrol without them")


class SpeakerDeleted(BaseModel):
    speaker: str
    deleted: int = Field(description="enrolment files removed (one per adapter version)")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    backbone: dict[str, Any] | None
    #: where and in what the encoder computes (``{"encoder_device": "cpu", "encoder_precision": "int8"}``): what
    #: ``ELP_DTYPE=auto`` chose, and what the ASR second pass' ``auto`` read
    encoder: dict[str, str] | None = None
    default_adapters: dict[str, str | None]
    problems: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "invalid_audio", 401: "unauthorized (key routes)", 403: "forbidden (no key configured, cross-site)",
        404: "adapter_not_found", 413: "payload_too_large", 415: "unsupported_media_type",
        422: "invalid_request, no_speech, non_finite_output", 429: "rate_limited (Retry-After)",
        503: "overloaded (Retry-After)", 504: "timeout", 500: "internal",
    }.items()
}
