"""Typed answers of the server (plain dataclasses; ``raw`` keeps the full JSON for new fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AsrResult:
    text: str
    adapter: str
    duration_s: float
    timings_ms: dict[str, float]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class VerifyResult:
    score: float
    same_speaker: bool
    threshold: float
    adapter: str
    duration_s: float
    timings_ms: dict[str, float]
    speaker: str | None = None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class EmotionResult:
    label: str
    scores: dict[str, float]
    adapter: str
    duration_s: float
    timings_ms: dict[str, float]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class IntentResult:
    intent: str
    scores: dict[str, float]
    adapter: str
    duration_s: float
    timings_ms: dict[str, float]
    slots: dict[str, str] | None = None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class AdapterInfo:
    """A row of ``GET /adapters``: mirrors ``server.schemas.AdapterEntry`` (the client stays free of
    the server's dependencies; tests/clients/test_listing_model.py keeps the two equal)."""

    id: str
    task: str | None
    backbone: dict[str, Any] | None
    num_params: int | None
    size_bytes: int | None
    sha256: str | None
    resident: bool
    default: bool
    error: str | None = None


@dataclass(frozen=True)
class SpeakerInfo:
    speaker: str
    adapter: str
    num_clips: int
    total_duration_s: float
    created_at: float


def _pick(cls: type, data: dict[str, Any], **extra: Any) -> Any:
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in data.items() if k in names and k != "raw"}, **extra)


def parse_asr(data: dict[str, Any]) -> AsrResult:
    return _pick(AsrResult, data, raw=data)


def parse_verify(data: dict[str, Any]) -> VerifyResult:
    return _pick(VerifyResult, data, raw=data)


def parse_emotion(data: dict[str, Any]) -> EmotionResult:
    return _pick(EmotionResult, data, raw=data)


def parse_intent(data: dict[str, Any]) -> IntentResult:
    return _pick(IntentResult, data, raw=data)


def parse_adapters(data: list[dict[str, Any]]) -> list[AdapterInfo]:
    return [_pick(AdapterInfo, row) for row in data]


def parse_speakers(data: list[dict[str, Any]]) -> list[SpeakerInfo]:
    return [_pick(SpeakerInfo, row) for row in data]
