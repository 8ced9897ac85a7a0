"""A task's answer to decoded clips: the rows planned, run through the batching worker, shaped by the task.

Shared by the task routes (one upload) and live streams (one utterance at a time), so a streamed
utterance is answered exactly as the same audio sent to ``POST /<endpoint>`` would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elp.tasks import TaskRequest, TaskSpec
from server.adapters import AdapterLease
from server.audio import DecodedAudio
from server.rows import RowPlan
from server.service import InferenceOutcome, InferenceService


async def answer_clips(
    service: InferenceService, spec: TaskSpec, lease: AdapterLease, clips: list[DecodedAudio], *,
    fields: Mapping[str, Any] | None = None, enrolled: Any = None, enrolled_s: float | None = None,
    gallery: Any = None, receive: Any = None, counted: bool = True,
) -> tuple[dict[str, Any], InferenceOutcome]:
    """The task's answer fields for ``clips`` (``file`` first) and the outcome's timings. Unless not
    ``counted`` (a live stream's partial answer: its audio is counted with the utterance's final one), the
    audio and the answer's confidence go into the metrics. ``lease`` must be held until this returns."""
    plan = await service.plan(spec.name, clips)
    outcome = await service.infer_plan(spec.name, lease, plan, receive=receive)
    answer = shape_answer(service, spec, lease, plan, outcome.predictions, fields, enrolled=enrolled,
                          enrolled_s=enrolled_s, gallery=gallery)
    if counted:
        count_answer(service, spec, clips, plan, answer)
    return answer, outcome


def shape_answer(service: InferenceService, spec: TaskSpec, lease: AdapterLease, plan: RowPlan,
                 predictions: list[Any], fields: Mapping[str, Any] | None = None, *, enrolled: Any = None,
                 enrolled_s: float | None = None, gallery: Any = None) -> dict[str, Any]:
    """The task's answer to a plan's rows (the silence answer for a silent clip): :func:`answer_clips`' answer, and
    a streamed answer's, which runs the rows itself."""
    if plan.silent:
        return dict(spec.silence_answer or ())
    return spec.respond(TaskRequest(
        config=lease.entry.config, rows=predictions, durations_s=[clip.duration_s for clip in plan.rows],
        fields=dict(fields or {}), enrolled=enrolled, enrolled_duration_s=enrolled_s, gallery=gallery,
        fallbacks=service.task_fallbacks, segments_s=plan.spans,
    ))


def count_answer(service: InferenceService, spec: TaskSpec, clips: list[DecodedAudio], plan: RowPlan,
                 answer: Mapping[str, Any]) -> None:
    """What operators see of an answer: its audio, the voiceless part of it, and the answer's confidence."""
    metrics = service.metrics
    metrics.audio_seconds.labels(endpoint=spec.endpoint).inc(sum(clip.duration_s for clip in clips))
    metrics.voiceless_audio_seconds.labels(endpoint=spec.endpoint).inc(plan.unread_s)
    confidence = spec.answer_confidence(answer)
    if confidence is not None:
        metrics.answer_confidence.labels(endpoint=spec.endpoint).observe(confidence)
