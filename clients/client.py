"""Python client for the ELP speech server: ``ELPClient`` (sync) and ``AsyncELPClient`` (async).

Both share request building and answer parsing, so they cannot drift apart. Audio may be a path,
raw bytes, or a binary file object. Error answers raise the typed errors of ``clients.errors``.

The task methods (``asr``, ``verify``, ``emotion``, ``intent``, ...) are generated from the task
registry (``elp.tasks``, which imports no torch): one per registered task, named after its endpoint,
with its extra clips as positional arguments and its fields as keywords; ``client.task(endpoint, ...)``
calls any of them by name.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from clients import models
from clients.attribution import attribute
from clients.errors import error_from_response
from clients.streaming import astream, stream
from elp.tasks import TASKS, TaskSpec, task_for_endpoint

AudioInput = str | os.PathLike | bytes | IO[bytes]
DEFAULT_URL = "http://127.0.0.1:8000"


def _file_part(audio: AudioInput, default_name: str) -> tuple[str, bytes, str]:
    if isinstance(audio, bytes | bytearray):
        return default_name, bytes(audio), "application/octet-stream"
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        return path.name, path.read_bytes(), "application/octet-stream"
    name = Path(getattr(audio, "name", default_name) or default_name).name
    return name, audio.read(), "application/octet-stream"


def _audio_bytes(audio: AudioInput) -> bytes:
    """The upload's bytes, read once (for two requests of the same recording)."""
    return _file_part(audio, "audio.wav")[1]


def _speakers_words(diarized: Any, transcribed: Any) -> list[dict[str, Any]]:
    """The words by speaker; a speaker the server named by an enrolled one (``name_speakers``) under that name."""
    words = transcribed.raw.get("words")
    if words is None:
        raise ValueError(f"{transcribed.adapter} gives no word times: name an ASR set that does (asr-default)")
    enrolled = {entry["speaker"]: entry.get("name") for entry in diarized.raw.get("speakers", [])}
    turns = [{**turn, "speaker": enrolled.get(turn["speaker"]) or turn["speaker"]} for turn in diarized.turns]
    return attribute(words, turns)


def _task_request(
    path: str, files: Sequence[tuple[str, AudioInput]], fields: dict[str, str | None]
) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": path,
        "files": [(name, _file_part(audio, f"{name}.wav")) for name, audio in files],
        "data": {k: v for k, v in fields.items() if v is not None},
    }


def _form_value(value: Any) -> str | None:
    """A form field as sent: switches as ``true``/``false``, a list of ids joined by commas."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple | set):
        return ",".join(str(item) for item in value)
    return str(value)


def _spec_request(spec: TaskSpec, audio: AudioInput, clips: Sequence[AudioInput | None], adapter: str | None,
                  fields: dict[str, str | float | None]) -> dict[str, Any]:
    """The multipart request of a task: ``file``, its extra clips (positional, in the task's order; None
    = not sent), the form fields it takes (an enrolled speaker id) and ``adapter``."""
    names = [clip.name for clip in spec.extra_clips]
    if len(clips) > len(names):
        raise TypeError(f"{spec.endpoint} takes {len(names)} clip(s) besides the audio, got {len(clips)}")
    allowed = {spec.enrolled_reference.field} if spec.enrolled_reference is not None else set()
    allowed |= {option.name for option in spec.options}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(f"{spec.endpoint} takes no field(s) {unknown}")
    files = [("file", audio)] + [(name, clip) for name, clip in zip(names, clips, strict=False) if clip is not None]
    sent = {name: _form_value(value) for name, value in fields.items()}
    return _task_request(spec.route, files, {"adapter": adapter, **sent})


class _Shared:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        # the key for enrolment, speakers and admin: given, or ELP_API_KEY (as the server reads it)
        self.api_key = api_key if api_key is not None else (os.environ.get("ELP_API_KEY") or None)
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_response(response.status_code, body, response.headers)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text


class ELPClient(_Shared):
    """Blocking client. ``with ELPClient(url) as client: client.asr("clip.wav").text``"""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self._headers(),
                                  transport=transport)

    def __enter__(self) -> ELPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, **request: Any) -> Any:
        return self._parse(self._http.request(**request))

    def task(self, endpoint: str, audio: AudioInput, *clips: AudioInput | None, adapter: str | None = None,
             **fields: str | float | None) -> Any:
        """Any task by its endpoint (``"asr"``, ``"verify"``...); the named methods call this."""
        spec = task_for_endpoint(endpoint)
        return models.parse_result(spec, self._call(**_spec_request(spec, audio, clips, adapter, fields)))

    def stream(self, endpoint: str, audio: AudioInput | Iterable[Any], *, adapter: str | None = None,
               partials: bool = True, realtime: bool = False) -> Iterator[dict[str, Any]]:
        """A live stream to ``/<endpoint>/stream`` (tasks whose request is one clip): the server's messages as
        they come (``clients.streaming.stream``: a file, or 16 kHz float arrays as they are recorded)."""
        return stream(self.base_url, endpoint, audio, adapter=adapter, partials=partials, realtime=realtime,
                      api_key=self.api_key, open_timeout=self.timeout)

    def who_said_what(self, audio: AudioInput, *, num_speakers: int | None = None, speaker_adapter: str | None = None,
                      asr_adapter: str | None = None, name_speakers: bool | None = None) -> list[dict[str, Any]]:
        """``/diarize`` and ``/asr`` of one recording, each word given to its speaker: ``[{speaker, start_s, end_s,
        text}, ...]`` (:func:`clients.attribution.attribute`); with ``name_speakers`` (the key) a speaker who
        matches an enrolled one is given that one's id."""
        data = _audio_bytes(audio)
        diarized = self.task("diarize", data, num_speakers=num_speakers, adapter=speaker_adapter,
                             name_speakers=name_speakers)
        return _speakers_words(diarized, self.task("asr", data, adapter=asr_adapter))

    def enroll_speaker(self, speaker: str, clips: Sequence[AudioInput], *,
                       adapter: str | None = None) -> models.SpeakerInfo:
        request = _task_request(f"/speakers/{speaker}", [("file", clip) for clip in clips], {"adapter": adapter})
        return models.parse_speakers([self._call(**request)])[0]

    def speakers(self) -> list[models.SpeakerInfo]:
        return models.parse_speakers(self._call(method="GET", url="/speakers"))

    def delete_speaker(self, speaker: str) -> int:
        return int(self._call(method="DELETE", url=f"/speakers/{speaker}")["deleted"])

    def adapters(self) -> list[models.AdapterInfo]:
        return models.parse_adapters(self._call(method="GET", url="/adapters"))

    def load_adapter(self, adapter_id: str) -> dict[str, Any]:
        return self._call(method="POST", url=f"/adapters/{adapter_id}/load")

    def unload_adapter(self, adapter_id: str) -> dict[str, Any]:
        return self._call(method="DELETE", url=f"/adapters/{adapter_id}/resident")

    def health(self) -> bool:
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> dict[str, Any]:
        """The readiness report; raises ``OverloadedError`` while not ready."""
        return self._call(method="GET", url="/readyz")

    def metrics(self) -> str:
        return self._call(method="GET", url="/metrics")


class AsyncELPClient(_Shared):
    """Asyncio client with the same methods as ``ELPClient``, awaited.

    Up to ``max_connections`` requests run at once, and as many connections stay open between them:
    httpx keeps only 20 alive by default, so with more requests in flight every request past the 20th
    opened and closed a TCP connection of its own (at concurrency 64, two in three), CPU on both ends."""

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None, max_connections: int = 100) -> None:
        super().__init__(base_url, api_key, timeout)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=self._headers(),
                                       transport=transport, limits=limits)

    async def __aenter__(self) -> AsyncELPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, **request: Any) -> Any:
        return self._parse(await self._http.request(**request))

    async def task(self, endpoint: str, audio: AudioInput, *clips: AudioInput | None, adapter: str | None = None,
                   **fields: str | float | None) -> Any:
        """Any task by its endpoint (``"asr"``, ``"verify"``...); the named methods call this."""
        spec = task_for_endpoint(endpoint)
        return models.parse_result(spec, await self._call(**_spec_request(spec, audio, clips, adapter, fields)))


    def stream(self, endpoint: str, audio: AudioInput | Iterable[Any] | AsyncIterable[Any], *,
               adapter: str | None = None, partials: bool = True,
               realtime: bool = False) -> AsyncIterator[dict[str, Any]]:
        """A live stream, as ``ELPClient.stream``: ``async for message in client.stream("asr", ...)``."""
        return astream(self.base_url, endpoint, audio, adapter=adapter, partials=partials, realtime=realtime,
                       api_key=self.api_key, open_timeout=self.timeout)

    async def who_said_what(self, audio: AudioInput, *, num_speakers: int | None = None,
                            speaker_adapter: str | None = None, asr_adapter: str | None = None,
                            name_speakers: bool | None = None) -> list[dict[str, Any]]:
        """As ``ELPClient.who_said_what``, the two requests at once (the server batches them together)."""
        data = _audio_bytes(audio)
        diarized, transcribed = await asyncio.gather(
            self.task("diarize", data, num_speakers=num_speakers, adapter=speaker_adapter, name_speakers=name_speakers),
            self.task("asr", data, adapter=asr_adapter))
        return _speakers_words(diarized, transcribed)

    async def enroll_speaker(self, speaker: str, clips: Sequence[AudioInput], *,
                             adapter: str | None = None) -> models.SpeakerInfo:
        request = _task_request(f"/speakers/{speaker}", [("file", clip) for clip in clips], {"adapter": adapter})
        return models.parse_speakers([await self._call(**request)])[0]

    async def speakers(self) -> list[models.SpeakerInfo]:
        return models.parse_speakers(await self._call(method="GET", url="/speakers"))

    async def delete_speaker(self, speaker: str) -> int:
        return int((await self._call(method="DELETE", url=f"/speakers/{speaker}"))["deleted"])

    async def adapters(self) -> list[models.AdapterInfo]:
        return models.parse_adapters(await self._call(method="GET", url="/adapters"))

    async def load_adapter(self, adapter_id: str) -> dict[str, Any]:
        return await self._call(method="POST", url=f"/adapters/{adapter_id}/load")

    async def unload_adapter(self, adapter_id: str) -> dict[str, Any]:
        return await self._call(method="DELETE", url=f"/adapters/{adapter_id}/resident")

    async def health(self) -> bool:
        return (await self._http.get("/healthz")).status_code == 200

    async def ready(self) -> dict[str, Any]:
        return await self._call(method="GET", url="/readyz")

    async def metrics(self) -> str:
        return await self._call(method="GET", url="/metrics")


def _task_signature(spec: TaskSpec, result: type) -> inspect.Signature:
    """``(self, audio, <extra clips>=None, *, <fields>=None, adapter=None)``: what help() shows."""
    positional, keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("self", positional), inspect.Parameter("audio", positional, annotation=AudioInput)]
    parameters += [inspect.Parameter(clip.name, positional, default=None, annotation=AudioInput | None)
                   for clip in spec.extra_clips]
    if spec.enrolled_reference is not None:
        parameters.append(inspect.Parameter(spec.enrolled_reference.field, keyword, default=None,
                                            annotation=str | None))
    parameters += [inspect.Parameter(option.name, keyword, default=None, annotation=option.kind | None)
                   for option in spec.options]
    parameters.append(inspect.Parameter("adapter", keyword, default=None, annotation=str | None))
    return inspect.Signature(parameters, return_annotation=result)


def _add_task_methods(spec: TaskSpec) -> None:
    """``client.<endpoint>(audio, ...)`` on both clients, generated from the task registry."""
    clip_names = [clip.name for clip in spec.extra_clips]

    def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        clips = list(args) + [None] * (len(clip_names) - len(args))
        for index, name in enumerate(clip_names):
            if name in kwargs:
                clips[index] = kwargs.pop(name)
        return tuple(clips), kwargs

    def sync_method(self: ELPClient, audio: AudioInput, *args: Any, **kwargs: Any) -> Any:
        clips, kwargs = split(args, kwargs)
        return self.task(spec.endpoint, audio, *clips, **kwargs)

    async def async_method(self: AsyncELPClient, audio: AudioInput, *args: Any, **kwargs: Any) -> Any:
        clips, kwargs = split(args, kwargs)
        return await self.task(spec.endpoint, audio, *clips, **kwargs)

    result = models.RESULT_TYPES[spec.name]
    for owner, method in ((ELPClient, sync_method), (AsyncELPClient, async_method)):
        method.__name__ = method.__qualname__ = spec.endpoint
        method.__doc__ = f"POST {spec.route}: {spec.summary} Returns ``{result.__name__}``."
        method.__signature__ = _task_signature(spec, result)  # type: ignore[attr-defined]
        setattr(owner, spec.endpoint, method)


for _spec in TASKS:
    _add_task_methods(_spec)
