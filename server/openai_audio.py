"""OpenAI's audio API on this server: ``POST /v1/audio/transcriptions``, ``/v1/audio/translations`` and
``GET /v1/models``.

Why: many tools speak only OpenAI's "Whisper API" (the ``openai`` SDKs, note-takers, editors, chat front ends);
with these routes they reach this server by its base URL (``http://host:8000/v1``) and nothing else. The route
is made from the registry (:attr:`elp.tasks.TaskSpec.openai_audio`), its form fields those OpenAI's route takes
(translations: no ``language``, ``stream`` or timestamp granularities), and answers through the same decoding,
batching worker and task code as the task's own route, so its ``text`` is the task route's ``text`` for the same
upload. Its answers are shaped by ``server.openai_formats``; errors keep this server's body, which the SDKs read
(``{"error": {"code", "message"}}``).
"""

# no ``from __future__ import annotations``: the handler's form fields describe themselves from the registry entry
# (closure values), so FastAPI must see evaluated annotations, not strings it would resolve in module globals

import asyncio
import base64
import binascii
import inspect
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from elp.long_form import join_texts
from elp.tasks import TASKS, EnrolledVoice, OpenAIAudio, TaskSpec, get_task
from elp.tasks.verification import mean_unit_embedding
from server.adapters import AdapterLease
from server.answering import answer_clips, count_answer, shape_answer
from server.audio import DecodedAudio
from server.errors import AdapterNotFoundError, InvalidRequestError, ServerError
from server.openai_formats import RESPONSE_FORMATS, diarized_json, shaped, sse_event, usage
from server.routes import AUDIO_ROUTE, RequestClock, Service, decode_and_lease
from server.rows import RowPlan
from server.schemas import ERROR_RESPONSES
from server.service import InferenceService

router = APIRouter()

Granularity = Literal["word", "segment"]
#: OpenAI's own bounds on known speakers: at most 4, each named once
MAX_KNOWN_SPEAKERS = 4
MAX_SPEAKER_NAME_CHARS = 64


def openai_path(spec: TaskSpec) -> str:
    assert spec.openai_audio is not None
    return f"/v1/audio/{spec.openai_audio.route}"


#: the OpenAI-compatible path of each task that has one (the Ray ingress routes by it too)
OPENAI_TASK_OF_PATH: dict[str, TaskSpec] = {openai_path(spec): spec for spec in TASKS if spec.openai_audio}


def adapter_for_model(spec: TaskSpec, model: str | None) -> str | None:
    """The set a request's ``model`` names: None (the task's default) for none and for OpenAI's own names."""
    assert spec.openai_audio is not None
    if model is None or not model.strip() or model in spec.openai_audio.model_aliases:
        return None
    return model


def response_formats(openai: OpenAIAudio) -> tuple[str, ...]:
    """The ``response_format`` values a route takes: OpenAI's five, and ``diarized_json`` where it is offered."""
    return tuple(name for name in RESPONSE_FORMATS if name != "diarized_json" or openai.diarized_with)


def _check_request(spec: TaskSpec, language: str | None, response_format: str, granularities: list[str] | None,
                   stream: bool | None, names: list[str], references: list[str]) -> None:
    """Refuse what the route's sets cannot answer; each check only where the spec offers the field (a route whose
    sets detect the language takes no ``language``, so it is checked only against a fixed one)."""
    openai = spec.openai_audio
    assert openai is not None
    if stream and response_format not in ("json", "text"):
        raise InvalidRequestError(f"stream=true answers with events of text (response_format json or text); for "
                                  f"live audio use the WebSocket {spec.route}/stream (docs/API.md, 'Live streams')")
    if granularities and response_format != "verbose_json":
        raise InvalidRequestError("timestamp_granularities[] needs response_format=verbose_json")
    if openai.language and language is not None \
            and language.strip().lower() not in (openai.language, openai.language_name):
        raise InvalidRequestError(f"this server's {spec.heading.lower()} sets read {openai.language_name.capitalize()} "
                                  f"(language '{openai.language}'); got language {language[:40]!r}")
    if response_format == "diarized_json" and not openai.diarized_with:
        raise InvalidRequestError("response_format=diarized_json is not offered for this route")
    if (names or references) and response_format != "diarized_json":
        raise InvalidRequestError("known_speaker_names[] and known_speaker_references[] need "
                                  "response_format=diarized_json")
    if len(names) != len(references) or len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidRequestError(f"send as many known_speaker_names[] as known_speaker_references[], at most "
                                  f"{MAX_KNOWN_SPEAKERS}; got {len(names)} and {len(references)}")
    if len(set(names)) != len(names) or not all(
            0 < len(name) <= MAX_SPEAKER_NAME_CHARS and name.isprintable() for name in names):
        raise InvalidRequestError(f"known_speaker_names[] must be distinct printable names of 1-"
                                  f"{MAX_SPEAKER_NAME_CHARS} characters")


def data_url_bytes(url: str, field: str) -> bytes:
    """The bytes of a base64 data URL (``data:audio/wav;base64,...``), as OpenAI takes speaker references."""
    head, comma, payload = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and comma):
        raise InvalidRequestError(f"'{field}' must be a data URL: data:audio/...;base64,<audio>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"'{field}' is not valid base64") from None


async def known_speakers(service: InferenceService, spec: TaskSpec, lease: AdapterLease, names: list[str],
                         references: list[str]) -> list[EnrolledVoice]:
    """The request's own reference clips, embedded by the diarization's set as an enrolment would embed them (each
    through that task's voice gate): speakers the diarization names (``TaskRequest.gallery``). Nothing is stored,
    and nothing enrolled is compared, so no key is needed."""
    if not names:
        return []
    fields = [f"known_speaker_references[{i}]" for i in range(len(names))]
    datas = [data_url_bytes(url, field) for url, field in zip(references, fields, strict=True)]
    clips = await asyncio.gather(*(service.decode(data, field, spec.set_task) for data, field in zip(datas, fields,
                                                                                                    strict=True)))
    outcome = await service.infer_each(spec.set_task, lease, list(clips))
    return [EnrolledVoice(name, mean_unit_embedding([prediction.embedding]), clip.duration_s)
            for name, prediction, clip in zip(names, outcome.predictions, clips, strict=True)]


def diarization_options(diarization: TaskSpec, form: Any) -> dict[str, Any]:
    """The diarization task's own numeric options (``num_speakers``, ``max_speakers``), which ``diarized_json`` also
    takes as form fields (OpenAI has none: an extension), checked against the registry's bounds."""
    values: dict[str, Any] = {}
    for option in diarization.options:
        raw = form.get(option.name)
        if option.gallery or option.kind not in (int, float) or raw is None or raw == "":
            continue
        try:
            value = option.kind(raw)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"'{option.name}' must be a number") from None
        if (option.minimum is not None and value < option.minimum) or (
                option.maximum is not None and value > option.maximum):
            raise InvalidRequestError(f"'{option.name}' must be within {option.minimum:g}-{option.maximum:g}")
        values[option.name] = value
    return values


async def diarized_answer(service: InferenceService, spec: TaskSpec, lease: AdapterLease, clips: list[DecodedAudio],
                          names: list[str], references: list[str], request: Request
                          ) -> tuple[dict[str, Any], Any, str]:
    """``diarized_json``: the transcript and the diarization (``openai_audio.diarized_with``, its default set) of
    the same decoded upload, run at once, the words then given to the speakers' turns; also the label of the set
    that found the speakers."""
    assert spec.openai_audio is not None
    diarization = get_task(spec.openai_audio.diarized_with)
    options = diarization_options(diarization, await request.form())
    diarization_lease = await service.lease(diarization.name, None)
    with diarization_lease:
        gallery = await known_speakers(service, diarization, diarization_lease, names, references)
        (transcript, outcome), (speakers, _) = await asyncio.gather(
            answer_clips(service, spec, lease, clips, receive=request.receive),
            answer_clips(service, diarization, diarization_lease, clips, fields=options, gallery=gallery or None,
                         receive=request.receive))
    return diarized_json(transcript, speakers, clips[0].duration_s), outcome, diarization_lease.entry.label


async def streamed_transcript(service: InferenceService, spec: TaskSpec, lease: AdapterLease,
                              clips: list[DecodedAudio]) -> StreamingResponse:
    """``stream=true``: OpenAI's transcription events as server-sent events. A long recording's segments are queued
    together as for ``/asr`` and each one's text is sent (``transcript.text.delta``) as soon as it and those before
    it are read; ``transcript.text.done`` carries the whole text, the one ``/asr`` answers. The lease is held until
    the last event (or the client leaves: the jobs not started are dropped); an error after the first byte is an
    ``error`` event, which OpenAI's SDKs raise."""
    try:
        plan = await service.plan(spec.name, clips)
    except BaseException:
        lease.release()
        raise

    async def events() -> AsyncIterator[bytes]:
        predictions: list[Any] = []
        try:
            async for rows in service.iter_plan(spec.name, lease, plan):
                part = plan.rows if plan.spans is None else plan.rows[len(predictions):len(predictions) + len(rows)]
                text = str(shape_answer(service, spec, lease, RowPlan(part), rows).get("text") or "")
                text = text if plan.spans is None else join_texts([text])  # as the whole answer joins segments
                if text:
                    yield sse_event({"type": "transcript.text.delta", "delta": (" " if predictions else "") + text})
                predictions += rows
            answer = shape_answer(service, spec, lease, plan, predictions)
            count_answer(service, spec, clips, plan, answer)
            yield sse_event({"type": "transcript.text.done", "text": str(answer.get("text") or ""),
                          **usage(clips[0].duration_s)})
        except ServerError as exc:
            yield sse_event({"type": "error", "error": {"code": exc.code, "message": exc.message}})
        finally:
            lease.release()

    return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(lease.release),
                             headers={"X-ELP-Adapter": lease.entry.label, "Cache-Control": "no-cache"})


def _openai_parameters(spec: TaskSpec) -> list[inspect.Parameter]:
    """The form of a task's OpenAI route as OpenAI's API has it (FastAPI reads the handler's signature, so the
    OpenAPI schema shows it): ``language`` only where the sets read one fixed language, ``timestamp_granularities[]``,
    ``stream`` and the known speakers only where offered, ``response_format`` within the route's formats."""
    openai = spec.openai_audio
    assert openai is not None
    required = inspect.Parameter.empty

    def field(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    aliases = ", ".join(openai.model_aliases)
    parameters = [
        field("request", Request, required), field("service", Service, required),
        field("file", Annotated[UploadFile, File(description="the audio (any format the task route takes)")], required),
        field("model", Annotated[str | None, Form(description=f"an adapter set id from GET /v1/models; OpenAI's own "
                                                   f"names ({aliases}) and none mean the default set")]),
    ]
    if openai.language:
        parameters.append(field("language", Annotated[str | None, Form(
            description=f"ISO-639-1; the sets read '{openai.language}' only")]))
    parameters += [
        field("prompt", Annotated[str | None, Form(description="accepted and not used: the sets take no text "
                                                    "context")]),
        field("response_format", Annotated[Literal[response_formats(openai)], Form()], "json"),  # type: ignore[misc]
        field("temperature", Annotated[float | None, Form(ge=0.0, le=1.0, description="accepted and not used: one "
                                                          "deterministic search, chosen on validation")]),
    ]
    if openai.word_timestamps:
        parameters.append(field("timestamp_granularities", Annotated[list[Granularity] | None, Form(
            alias="timestamp_granularities[]")]))
    if openai.diarized_with:
        parameters += [
            field("known_speaker_names", Annotated[list[str] | None, Form(
                alias="known_speaker_names[]", description="diarized_json: names for known_speaker_references[]")]),
            field("known_speaker_references", Annotated[list[str] | None, Form(
                alias="known_speaker_references[]", description="diarized_json: a clip of each known speaker as a "
                "data URL (data:audio/wav;base64,...); a speaker found who matches one is labelled with its name")]),
        ]
    if openai.streams:
        parameters.append(field("stream", Annotated[bool | None, Form(
            description="true: server-sent events, the text as it is read (transcript.text.delta, then "
                        "transcript.text.done)")]))
    return parameters


def transcription_handler(spec: TaskSpec) -> Any:
    """The handler of ``spec``'s OpenAI route: OpenAI's form fields in (:func:`_openai_parameters`), OpenAI's answer
    shapes out."""
    openai = spec.openai_audio
    assert openai is not None

    async def handler(request: Request, service: InferenceService, file: UploadFile, model: str | None = None,
                      response_format: str = "json", **form: Any) -> Response:
        names, references = form.get("known_speaker_names") or [], form.get("known_speaker_references") or []
        granularities, stream = form.get("timestamp_granularities") or [], form.get("stream")
        _check_request(spec, form.get("language"), response_format, granularities, stream, names, references)
        clock = RequestClock()
        clips, lease = await decode_and_lease(service, spec, adapter_for_model(spec, model), [("file", file)], clock)
        if stream:
            return await streamed_transcript(service, spec, lease, clips)
        headers = {"X-ELP-Adapter": lease.entry.label}
        with lease:
            if response_format == "diarized_json":
                body, outcome, headers["X-ELP-Speaker-Adapter"] = await diarized_answer(
                    service, spec, lease, clips, names, references, request)
                media_type = "application/json"
            else:
                answer, outcome = await answer_clips(service, spec, lease, clips, receive=request.receive)
                body, media_type = shaped(answer, clips[0].duration_s, response_format, openai.language_of(answer),
                                          granularities, openai.whisper_task)
        headers["Server-Timing"] = ", ".join(f"{name};dur={ms}" for name, ms in
                                             clock.timings(outcome.queue_ms, outcome.inference_ms).items())
        if isinstance(body, dict):
            return JSONResponse(body, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    handler.__name__ = f"openai_{openai.route}"
    handler.__doc__ = (f"OpenAI-compatible {spec.heading.lower()} (``{openai_path(spec)}``), answered as "
                       f"``{spec.route}`` answers; response_format {', '.join(response_formats(openai))}.")
    handler.__signature__ = inspect.Signature(_openai_parameters(spec), return_annotation=Response)  # type: ignore[attr-defined]
    return handler


for _spec in OPENAI_TASK_OF_PATH.values():
    router.add_api_route(openai_path(_spec), transcription_handler(_spec), methods=["POST"],
                         name=f"openai_{_spec.openai_audio.route}", tags=["openai"], **AUDIO_ROUTE)


async def _model_objects(service: InferenceService) -> list[dict[str, Any]]:
    """OpenAI model objects of the adapter sets the OpenAI routes answer with (``created``: when the set's files were
    last written; ``task`` and ``default`` added)."""
    tasks = {spec.set_task for spec in OPENAI_TASK_OF_PATH.values()}
    rows = [row for row in await service.list_adapters() if row["task"] in tasks and not row["error"]]

    def written(adapter_id: str) -> int | None:
        try:
            return max(mtime for mtime, _, _ in service.store.signature(adapter_id)) // 1_000_000_000
        except Exception:  # deleted since the listing
            return None

    created = await asyncio.to_thread(lambda: [written(row["id"]) for row in rows])
    return [{"id": row["id"], "object": "model", "created": when, "owned_by": "elp", "task": row["task"],
             "default": row["default"]} for row, when in zip(rows, created, strict=True) if when is not None]


@router.get("/v1/models", tags=["openai"])
async def list_models(service: Service) -> dict[str, Any]:
    """OpenAI's model listing: the adapter sets the OpenAI routes answer with."""
    return {"object": "list", "data": await _model_objects(service)}


@router.get("/v1/models/{model}", tags=["openai"], responses=ERROR_RESPONSES)
async def retrieve_model(model: str, service: Service) -> dict[str, Any]:
    """One model object: an adapter set by id, or one of OpenAI's own names (``alias_of``: the default set that
    answers it), which tools look up before they send it."""
    objects = await _model_objects(service)
    for spec in OPENAI_TASK_OF_PATH.values():
        if adapter_for_model(spec, model) is None:
            default = next((o for o in objects if o["task"] == spec.set_task and o["default"]), None)
            if default is not None:
                return {**default, "id": model, "alias_of": default["id"]}
    found = next((o for o in objects if o["id"] == model), None)
    if found is None:
        raise AdapterNotFoundError(f"model '{model[:100]}' is not an adapter set the OpenAI routes serve "
                                   "(GET /v1/models lists them)")
    return found
