"""HTTP routes of docs/API.md. Handlers validate, decode off-loop, lease an adapter, enqueue, shape.

They never touch the model: the batching worker does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from server.adapters import AdapterLease
from server.audio import DecodedAudio
from server.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from server.schemas import (
    ERROR_RESPONSES,
    AdapterAction,
    AdapterEntry,
    AsrAnswer,
    EmotionAnswer,
    Health,
    IntentAnswer,
    Readiness,
    SpeakerDeleted,
    SpeakerEntry,
    VerifyAnswer,
)
from server.security import limit_speaker_verification, require_api_key
from server.service import InferenceService
from server.speakers import get_enrolled, validate_speaker_id

router = APIRouter()

AdapterField = Annotated[str | None, Form(description="adapter id from GET /adapters; default when absent")]


def get_service(request: Request) -> InferenceService:
    return request.app.state.service


Service = Annotated[InferenceService, Depends(get_service)]


async def require_audio_upload(request: Request) -> None:
    """415 unless the request is multipart with a ``file`` field (checked before field validation)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError("send multipart/form-data with the clip in the 'file' field")
    form = await request.form()
    if "file" not in form:
        raise UnsupportedMediaTypeError("multipart body has no 'file' field")


_audio_route = {"dependencies": [Depends(require_audio_upload)], "responses": ERROR_RESPONSES}
_key_route = {"dependencies": [Depends(require_api_key)], "responses": ERROR_RESPONSES}
#: decimals of the score of /verify against an enrolled speaker: enough to read, too coarse to climb
SPEAKER_SCORE_DECIMALS = 2


class _Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.decode_ms = 0.0

    def timings(self, queue_ms: float, inference_ms: float) -> dict[str, float]:
        total = (time.perf_counter() - self.started) * 1000.0
        return {"decode": round(self.decode_ms, 3), "queue": round(queue_ms, 3),
                "inference": round(inference_ms, 3), "total": round(total, 3)}


async def _decode_and_lease(
    service: InferenceService, task: str, adapter: str | None, uploads: list[tuple[str, UploadFile]], clock: _Clock
) -> tuple[list[DecodedAudio], AdapterLease]:
    """Admit (503 before any work when the queue is too long), then decode every upload and lease the
    adapter concurrently; release the lease if decoding fails."""
    service.admit(len(uploads))

    async def decode_all() -> list[DecodedAudio]:
        started = time.perf_counter()
        datas = [(field, await upload.read()) for field, upload in uploads]
        clips = await asyncio.gather(*(service.decode(data, field) for field, data in datas))
        clock.decode_ms = (time.perf_counter() - started) * 1000.0
        return list(clips)

    decode_task = asyncio.ensure_future(decode_all())
    lease_task = asyncio.ensure_future(service.lease(task, adapter))
    try:
        with service.incoming():  # batches being formed may wait for this request (it is on its way)
            await asyncio.gather(decode_task, lease_task)
    except BaseException:
        if lease_task.done() and not lease_task.cancelled() and lease_task.exception() is None:
            lease_task.result().release()
        for task_ in (decode_task, lease_task):
            task_.cancel()
        # prefer the audio error: it is the client's own, the adapter one may be a server problem
        if decode_task.done() and not decode_task.cancelled() and decode_task.exception() is not None:
            raise decode_task.exception() from None
        raise
    return decode_task.result(), lease_task.result()


def _base(lease: AdapterLease, clip: DecodedAudio, clock: _Clock, outcome: Any) -> dict[str, Any]:
    return {"adapter": lease.entry.label, "duration_s": round(clip.duration_s, 4),
            "timings_ms": clock.timings(outcome.queue_ms, outcome.inference_ms)}


@router.post("/asr", response_model=AsrAnswer, tags=["tasks"], **_audio_route)
async def asr(request: Request, service: Service, file: Annotated[UploadFile, File()],
             adapter: AdapterField = None) -> dict:
    """Transcribe a clip."""
    clock = _Clock()
    clips, lease = await _decode_and_lease(service, "asr", adapter, [("file", file)], clock)
    with lease:
        outcome = await service.infer("asr", lease, clips, receive=request.receive)
    return {"text": outcome.predictions[0].text or "", **_base(lease, clips[0], clock, outcome)}


@router.post("/verify", response_model=VerifyAnswer, response_model_exclude_none=True, tags=["tasks"],
             **_audio_route)
async def verify(
    request: Request,
    service: Service,
    file: Annotated[UploadFile, File(description="the clip to check")],
    reference: Annotated[UploadFile | None, File(description="a clip of the claimed speaker")] = None,
    speaker: Annotated[str | None, Form(description="an enrolled speaker id instead of `reference`")] = None,
    adapter: AdapterField = None,
) -> dict:
    """Same speaker? Cosine of the two embeddings against the adapter set's calibrated threshold.
    Against an enrolled ``speaker``: the key, a per-client rate limit and a rounded score."""
    if (reference is None) == (speaker is None):
        raise InvalidRequestError("send exactly one of 'reference' (a clip) or 'speaker' (an enrolled id)")
    clock = _Clock()
    uploads = [("file", file)] + ([("reference", reference)] if reference is not None else [])
    if speaker is not None:
        require_api_key(request)
        validate_speaker_id(speaker)
        limit_speaker_verification(request)
    clips, lease = await _decode_and_lease(service, "verification", adapter, uploads, clock)
    with lease:
        entry = lease.entry
        if speaker is not None:
            enrolled = await asyncio.to_thread(get_enrolled, service.speakers, speaker, entry.adapter_id,
                                               entry.enrolment_versions)
        outcome = await service.infer("verification", lease, clips, receive=request.receive)
    embedding = outcome.predictions[0].embedding.float().flatten()
    other = outcome.predictions[1].embedding if speaker is None else enrolled.embedding
    score = float(torch.nn.functional.cosine_similarity(embedding, other.float().flatten().to(embedding.device),
                                                        dim=0).clamp(-1.0, 1.0))
    threshold = entry.config.threshold
    threshold = float(service.settings.verify_threshold if threshold is None else threshold)
    answer = {"score": score, "same_speaker": score >= threshold, "threshold": threshold,
              **_base(lease, clips[0], clock, outcome)}
    if speaker is not None:
        answer["score"] = round(score, SPEAKER_SCORE_DECIMALS)
        answer["speaker"] = speaker
    else:
        answer["reference_duration_s"] = round(clips[1].duration_s, 4)
    return answer


@router.post("/emotion", response_model=EmotionAnswer, tags=["tasks"], **_audio_route)
async def emotion(request: Request, service: Service, file: Annotated[UploadFile, File()],
                 adapter: AdapterField = None) -> dict:
    """Classify the speaker's emotion."""
    clock = _Clock()
    clips, lease = await _decode_and_lease(service, "emotion", adapter, [("file", file)], clock)
    with lease:
        outcome = await service.infer("emotion", lease, clips, receive=request.receive)
    prediction = outcome.predictions[0]
    return {"label": prediction.label, "scores": _float_scores(prediction.scores),
            **_base(lease, clips[0], clock, outcome)}


@router.post("/intent", response_model=IntentAnswer, response_model_exclude_none=True, tags=["tasks"],
             **_audio_route)
async def intent(request: Request, service: Service, file: Annotated[UploadFile, File()],
                adapter: AdapterField = None) -> dict:
    """Recognise the spoken command's intent (and its slots when the set defines them)."""
    clock = _Clock()
    clips, lease = await _decode_and_lease(service, "intent", adapter, [("file", file)], clock)
    with lease:
        outcome = await service.infer("intent", lease, clips, receive=request.receive)
    prediction = outcome.predictions[0]
    answer = {"intent": prediction.label, "scores": _float_scores(prediction.scores),
              **_base(lease, clips[0], clock, outcome)}
    slots = split_slots(prediction.label, getattr(lease.entry.config, "slot_names", None))
    if slots is not None:
        answer["slots"] = slots
    return answer


def split_slots(label: str, slot_names: list[str] | None) -> dict[str, str] | None:
    """``"increase_volume_none"`` + [action, object, location] -> a dict; None if it does not split."""
    if not slot_names:
        return None
    values = label.split("_")
    if len(values) != len(slot_names):
        return None
    return dict(zip(slot_names, values, strict=True))


def _float_scores(scores: dict[str, Any] | None) -> dict[str, float]:
    return {str(name): float(value) for name, value in (scores or {}).items()}


# -- speakers ------------------------------------------------------------------------------------


@router.post("/speakers/{speaker_id}", response_model=SpeakerEntry, tags=["speakers"],
             dependencies=[Depends(require_api_key), Depends(require_audio_upload)], responses=ERROR_RESPONSES)
async def enroll_speaker(
    request: Request,
    speaker_id: str,
    service: Service,
    file: Annotated[list[UploadFile], File(description="one or more clips of the speaker")],
    adapter: AdapterField = None,
) -> dict:
    """Enrol (or re-enrol) a speaker: stores the mean embedding of the clips for this adapter version.
    At most ``max_enrol_clips`` clips and ``max_enrol_seconds`` in all; each clip is its own job."""
    validate_speaker_id(speaker_id)
    settings = service.settings
    if len(file) > settings.max_enrol_clips:
        raise PayloadTooLargeError(f"an enrolment takes at most {settings.max_enrol_clips} clips; got {len(file)}")
    clock = _Clock()
    uploads = [(f"file[{i}]", upload) for i, upload in enumerate(file)]
    clips, lease = await _decode_and_lease(service, "verification", adapter, uploads, clock)
    total_s = sum(clip.duration_s for clip in clips)
    if total_s > settings.max_enrol_seconds:
        lease.release()
        raise PayloadTooLargeError(
            f"the enrolment's clips last {total_s:.1f} s; the maximum is {settings.max_enrol_seconds:g} s")
    with lease:
        outcome = await service.infer_each("verification", lease, clips, receive=request.receive)
        entry = lease.entry
        record = await asyncio.to_thread(
            service.speakers.enroll, speaker_id, entry.adapter_id, entry.sha256,
            [p.embedding for p in outcome.predictions], sum(c.duration_s for c in clips),
        )
    return _speaker_row(record)


@router.get("/speakers", response_model=list[SpeakerEntry], tags=["speakers"], **_key_route)
async def list_speakers(service: Service) -> list[dict]:
    """Every enrolment (one row per speaker and adapter version)."""
    return [_speaker_row(record) for record in await asyncio.to_thread(service.speakers.list)]


@router.delete("/speakers/{speaker_id}", response_model=SpeakerDeleted, tags=["speakers"], **_key_route)
async def delete_speaker(speaker_id: str, service: Service) -> dict:
    """Forget a speaker under every adapter version."""
    deleted = await asyncio.to_thread(service.speakers.delete, speaker_id)
    return {"speaker": speaker_id, "deleted": deleted}


def _speaker_row(record: Any) -> dict[str, Any]:
    return {"speaker": record.speaker, "adapter": record.adapter, "num_clips": record.num_clips,
            "total_duration_s": record.total_duration_s, "created_at": record.created_at}


# -- adapters ------------------------------------------------------------------------------------


@router.get("/adapters", response_model=list[AdapterEntry], response_model_exclude_none=False, tags=["adapters"])
async def list_adapters(service: Service) -> list[dict]:
    """Every adapter set in the store, resident or not."""
    return await service.list_adapters()


@router.post("/adapters/{adapter_id}/load", response_model=AdapterAction, tags=["admin"], **_key_route)
async def load_adapter(adapter_id: str, service: Service) -> dict:
    """Bring an adapter set into memory now (e.g. before traffic)."""
    assert service.cache is not None
    lease = await service.cache.acquire(adapter_id)
    lease.release()
    return {"id": adapter_id, "resident": True, "adapter": lease.entry.label}


@router.delete("/adapters/{adapter_id}/resident", response_model=AdapterAction, tags=["admin"], **_key_route)
async def unload_adapter(adapter_id: str, service: Service) -> dict:
    """Drop an adapter set from memory (pinned defaults too; they reload on next use)."""
    assert service.cache is not None
    await service.cache.unload(adapter_id)
    return {"id": adapter_id, "resident": False}


# -- health & metrics ----------------------------------------------------------------------------


@router.get("/healthz", response_model=Health, tags=["ops"])
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    """Liveness for probes that send HEAD (load balancers, ``curl -I``)."""
    return Response(status_code=200)


@router.get("/readyz", response_model=Readiness, tags=["ops"], responses={503: {"model": Readiness}})
async def readyz(service: Service) -> JSONResponse:
    """Readiness: backbone loaded and every default adapter resident."""
    ready, problems = service.readiness()
    identity = getattr(service.backbone, "identity", None)
    body = {"ready": ready, "backbone": identity.to_dict() if identity is not None else None,
            "default_adapters": service.defaults, "problems": problems}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", tags=["ops"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
