"""HTTP routes of docs/API.md. Handlers validate, decode off-loop, lease an adapter, enqueue, shape.

They never touch the model: the batching worker does.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from elp.tasks import TASKS, EnrolledVoice, TaskSpec, enrolment_task
from server.adapters import AdapterLease
from server.answering import answer_clips
from server.audio import DecodedAudio
from server.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    SpeakerNotFoundError,
    UnsupportedMediaTypeError,
)
from server.schemas import (
    ERROR_RESPONSES,
    AdapterAction,
    AdapterEntry,
    EnrolmentEntry,
    Health,
    Readiness,
    SpeakerDeleted,
    SpeakerEntry,
    answer_model,
)
from server.security import limit_speaker_verification, require_api_key
from server.service import InferenceService
from server.speakers import get_enrolled, get_gallery, validate_speaker_id

router = APIRouter()

AdapterField = Annotated[str | None, Form(description="adapter id from GET /adapters; default when absent")]


async def get_service(request: Request) -> InferenceService:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
    request (~10% of a saturated event loop's time) for one attribute read."""
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


AUDIO_ROUTE = {"dependencies": [Depends(require_audio_upload)], "responses": ERROR_RESPONSES}
_key_route = {"dependencies": [Depends(require_api_key)], "responses": ERROR_RESPONSES}


class RequestClock:
    """A request's timings (``timings_ms``): decode, queue, inference, total."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.decode_ms = 0.0

    def timings(self, queue_ms: float, inference_ms: float) -> dict[str, float]:
        total = (time.perf_counter() - self.started) * 1000.0
        return {"decode": round(self.decode_ms, 3), "queue": round(queue_ms, 3),
                "inference": round(inference_ms, 3), "total": round(total, 3)}


def _chosen_adapter(request: Request, form_value: str | None) -> str | None:
    """The ``adapter`` form field, or the same name in the query string (``/asr?adapter=...``, which users
    write and which would otherwise be ignored silently, answering with the default set); both, and
    different: refused."""
    query_value = request.query_params.get("adapter")
    if query_value is not None and form_value is not None and query_value != form_value:
        raise InvalidRequestError(f"'adapter' is {form_value!r} in the form and {query_value!r} in the query")
    return form_value if form_value is not None else query_value


async def decode_and_lease(
    service: InferenceService, spec: TaskSpec, adapter: str | None, uploads: list[tuple[str, UploadFile]],
    clock: RequestClock,
) -> tuple[list[DecodedAudio], AdapterLease]:
    """Admit (503 before any work when the queue is too long), then decode every upload (within the task's
    limits, through its speech gate if it has one) and lease the adapter concurrently; release the lease
    if decoding fails."""
    service.admit(len(uploads))

    async def decode_all() -> list[DecodedAudio]:
        started = time.perf_counter()
        datas = [(field, await upload.read()) for field, upload in uploads]
        clips = await asyncio.gather(*(service.decode(data, field, spec.name) for field, data in datas))
        clock.decode_ms = (time.perf_counter() - started) * 1000.0
        return list(clips)

    decode_task = asyncio.ensure_future(decode_all())
    lease_task = asyncio.ensure_future(service.lease(spec.name, adapter))
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


def _base(lease: AdapterLease, clip: DecodedAudio, clock: RequestClock, outcome: Any) -> dict[str, Any]:
    return {"adapter": lease.entry.label, "duration_s": round(clip.duration_s, 4),
            "timings_ms": clock.timings(outcome.queue_ms, outcome.inference_ms)}


def _task_parameters(spec: TaskSpec) -> list[inspect.Parameter]:
    """The form of a task's route: ``file``, the task's extra clips and enrolled-reference field,
    ``adapter`` (FastAPI reads them from the handler's signature, so the OpenAPI schema shows them)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    file_part = File(description=spec.file_description) if spec.file_description else File()
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("service", keyword, annotation=Service),
        inspect.Parameter("file", keyword, annotation=Annotated[UploadFile, file_part]),
    ]
    reference = spec.enrolled_reference
    for clip in spec.extra_clips:
        optional = reference is not None and reference.instead_of == clip.name
        annotation = Annotated[UploadFile | None if optional else UploadFile, File(description=clip.description)]
        parameters.append(inspect.Parameter(clip.name, keyword, annotation=annotation,
                                            default=None if optional else inspect.Parameter.empty))
    if reference is not None:
        parameters.append(inspect.Parameter(reference.field, keyword, default=None,
                                            annotation=Annotated[str | None, Form(description=reference.description)]))
    for option in spec.options:
        form = Form(description=option.description, ge=option.minimum, le=option.maximum)
        parameters.append(inspect.Parameter(option.name, keyword, default=None,
                                            annotation=Annotated[option.kind | None, form]))
    parameters.append(inspect.Parameter("adapter", keyword, annotation=AdapterField, default=None))
    return parameters


def _enrolled_id(spec: TaskSpec, request: Request, form: dict[str, Any]) -> str | None:
    """The enrolled reference a request names instead of a clip (after the key, id and rate checks)."""
    reference = spec.enrolled_reference
    if reference is None:
        return None
    enrolled_id = form.get(reference.field)
    if (form.get(reference.instead_of) is None) == (enrolled_id is None):
        raise InvalidRequestError(f"send exactly one of '{reference.instead_of}' (a clip) or "
                                  f"'{reference.field}' (an enrolled id)")
    if enrolled_id is not None:
        require_api_key(request)
        validate_speaker_id(enrolled_id)
        limit_speaker_verification(request)
    return enrolled_id


def _check_gallery_request(spec: TaskSpec, request: Request, form: dict[str, Any]) -> bool:
    """Whether the request is compared with every enrolled speaker (``/identify``; ``/diarize`` naming its
    speakers), which names them: then the key and the rate limit, before any work."""
    if not spec.compares_with_enrolled(form):
        return False
    require_api_key(request)
    limit_speaker_verification(request)
    return True


async def _enrolled_voices(service: InferenceService, entry: Any, required: bool) -> list[EnrolledVoice]:
    """The speakers enrolled for the leased set; 404 when there are none and the task needs some (``/identify``)."""
    records = await asyncio.to_thread(get_gallery, service.speakers, entry.adapter_id, entry.enrolment_versions)
    if not records and required:
        raise SpeakerNotFoundError(f"no speaker is enrolled for this version of adapter {entry.adapter_id}: enrol "
                                   "them with POST /speakers/{id} first")
    return [EnrolledVoice(record.speaker, record.embedding, record.total_duration_s or None) for record in records]


def task_handler(spec: TaskSpec) -> Any:
    """One handler for every task: decode and lease, run the rows as one job (a long recording: its
    segments, a job each), let the task shape the answer (``TaskSpec.respond``) from its rows'
    post-processed predictions."""

    async def handler(request: Request, service: InferenceService, file: UploadFile, adapter: str | None = None,
                      **form: Any) -> dict:
        enrolled_id = _enrolled_id(spec, request, form)
        with_gallery = _check_gallery_request(spec, request, form)
        clock = RequestClock()
        uploads = [("file", file)] + [(clip.name, form[clip.name]) for clip in spec.extra_clips
                                      if form.get(clip.name) is not None]
        clips, lease = await decode_and_lease(service, spec, _chosen_adapter(request, adapter), uploads, clock)
        with lease:
            entry = lease.entry
            enrolled, enrolled_s = None, None
            if enrolled_id is not None:
                record = await asyncio.to_thread(get_enrolled, service.speakers, enrolled_id, entry.adapter_id,
                                                 entry.enrolment_versions)
                enrolled, enrolled_s = record.embedding, record.total_duration_s or None
            gallery = await _enrolled_voices(service, entry, spec.enrolled_gallery) if with_gallery else None
            fields = {spec.enrolled_reference.field: enrolled_id} if enrolled_id is not None else {}
            fields.update({option.name: form[option.name] for option in spec.options
                           if form.get(option.name) is not None})
            answer, outcome = await answer_clips(service, spec, lease, clips, fields=fields, enrolled=enrolled,
                                                 enrolled_s=enrolled_s, gallery=gallery, receive=request.receive)
        return {**answer, **_base(lease, clips[0], clock, outcome)}

    handler.__name__ = spec.endpoint
    handler.__doc__ = "\n".join(filter(None, (spec.summary, spec.description)))
    handler.__signature__ = inspect.Signature(_task_parameters(spec), return_annotation=dict)  # type: ignore[attr-defined]
    return handler


for _spec in TASKS:
    router.add_api_route(
        _spec.route, task_handler(_spec), methods=["POST"], name=_spec.endpoint, response_model=answer_model(_spec),
        response_model_exclude_none=True, tags=["tasks"], **AUDIO_ROUTE,
    )


# -- speakers ------------------------------------------------------------------------------------
#: the task whose sets embed enrolled speakers (the one whose requests may name one)
ENROLMENT_SPEC = enrolment_task()


@router.post("/speakers/{speaker_id}", response_model=EnrolmentEntry, response_model_exclude_none=True,
             tags=["speakers"], dependencies=[Depends(require_api_key), Depends(require_audio_upload)],
             responses=ERROR_RESPONSES)
async def enroll_speaker(
    request: Request,
    speaker_id: str,
    service: Service,
    file: Annotated[list[UploadFile], File(description="one or more clips of the speaker")],
    adapter: AdapterField = None,
) -> dict:
    """Enrol (or re-enrol) a speaker: stores the mean embedding of the clips for this adapter version, and
    answers how well the clips agree (``clip_scores``, ``outlier_clips``). At most ``max_enrol_clips`` clips
    and ``max_enrol_seconds`` in all; each clip is its own job."""
    validate_speaker_id(speaker_id)
    settings = service.settings
    if len(file) > settings.max_enrol_clips:
        raise PayloadTooLargeError(f"an enrolment takes at most {settings.max_enrol_clips} clips; got {len(file)}")
    clock = RequestClock()
    uploads = [(f"file[{i}]", upload) for i, upload in enumerate(file)]
    clips, lease = await decode_and_lease(service, ENROLMENT_SPEC, _chosen_adapter(request, adapter), uploads, clock)
    total_s = sum(clip.duration_s for clip in clips)
    if total_s > settings.max_enrol_seconds:
        lease.release()
        raise PayloadTooLargeError(
            f"the enrolment's clips last {total_s:.1f} s; the maximum is {settings.max_enrol_seconds:g} s")
    with lease:
        outcome = await service.infer_each(ENROLMENT_SPEC.name, lease, clips, receive=request.receive)
        entry = lease.entry
        embeddings = [p.embedding for p in outcome.predictions]
        record = await asyncio.to_thread(
            service.speakers.enroll, speaker_id, entry.adapter_id, entry.enrolment_version,
            embeddings, sum(c.duration_s for c in clips),
        )
    report = ENROLMENT_SPEC.enrolment_report(entry.config, embeddings, service.task_fallbacks,
                                             [clip.duration_s for clip in clips])
    return {**_speaker_row(record), **report}


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
            "encoder": service.backbone.serving_options() if identity is not None else None,
            "default_adapters": service.defaults, "problems": problems}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", tags=["ops"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
