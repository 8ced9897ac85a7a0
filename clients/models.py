"""Typed answers of the server (plain dataclasses; ``raw`` keeps the full JSON for new fields).

A task's result type is made from its answer model in the task registry (``elp.tasks``, which
imports no torch), so a task added there has its typed result here too."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from elp.tasks import TASKS, TaskSpec

#: fields every task answer has (the server's ``TaskAnswer``), after the task's required ones
_COMMON_FIELDS = (("adapter", str), ("duration_s", float), ("timings_ms", dict[str, float]))


def result_type(spec: TaskSpec) -> type:
    """``<Title>Result``: a frozen dataclass of a task's answer, made from the task's answer model
    (its required fields, the common ones, its optional ones = None, and ``raw``)."""
    own = spec.answer_fields.model_fields
    required = [(name, f.annotation) for name, f in own.items() if f.is_required()]
    optional = [(name, f.annotation, field(default=None)) for name, f in own.items() if not f.is_required()]
    raw = ("raw", dict[str, Any], field(repr=False, default_factory=dict))
    return make_dataclass(f"{spec.title}Result", [*required, *_COMMON_FIELDS, *optional, raw], frozen=True,
                          namespace={"__module__": __name__, "__doc__": f"The answer of {spec.route}."})


#: result dataclass per task name, in registration order
RESULT_TYPES: dict[str, type] = {spec.name: result_type(spec) for spec in TASKS}
globals().update({cls.__name__: cls for cls in RESULT_TYPES.values()})  # AsrResult, VerifyResult, ...


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
    #: an enrolment's answer only (two clips or more): each clip against the others, and those under the threshold
    clip_scores: list[float] | None = None
    outlier_clips: list[int] | None = None


def _pick(cls: type, data: dict[str, Any], **extra: Any) -> Any:
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in data.items() if k in names and k != "raw"}, **extra)


def parse_result(spec: TaskSpec, data: dict[str, Any]) -> Any:
    """A task answer's JSON as its result dataclass (``raw`` keeps every field, also new ones)."""
    return _pick(RESULT_TYPES[spec.name], data, raw=data)


def parse_adapters(data: list[dict[str, Any]]) -> list[AdapterInfo]:
    return [_pick(AdapterInfo, row) for row in data]


def parse_speakers(data: list[dict[str, Any]]) -> list[SpeakerInfo]:
    return [_pick(SpeakerInfo, row) for row in data]
