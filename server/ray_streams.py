"""Live streams on Ray Serve: the ingress holds each stream's session and a replica answers each utterance.

The ingress runs what a stream needs between utterances (the voice detector, the endpointer, the limits:
``server.streaming``) and sends every utterance to a replica as the ``POST /<endpoint>`` of its audio, with
the set's multiplexed id, so a streamed utterance is answered by the same replica code, with the same adapter
affinity and retries, as an uploaded clip. The audio goes as a float WAV: the replica reads the samples the
ingress cut, bit for bit.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import soundfile as sf
from fastapi import Response

from elp.tasks import TaskSpec
from server.audio import DecodedAudio
from server.errors import AdapterNotFoundError, ServerError
from server.service import InferenceService
from server.streaming import Timings

#: (path, headers, body, multiplexed adapter id) -> the replica's answer, as the ingress forwards requests
Forward = Callable[[str, list[tuple[bytes, bytes]], bytes, str], Awaitable[Response]]


class ForwardedError(ServerError):
    """A replica's error answer, kept with its code and status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.code = status, code


class RayAnswers:
    """:class:`server.streaming.UtteranceAnswers` through the ingress' forwarding to replicas."""

    def __init__(self, spec: TaskSpec, resolver: InferenceService, forward: Forward) -> None:
        self.spec, self.resolver, self.forward = spec, resolver, forward
        # the stream's set (one per stream), resolved once as the single server keeps its defaults resolved, and
        # again only when a replica finds it gone (``answer``), not by reading the store at every utterance
        self._resolved: str | None = None

    def _adapter_id(self, adapter: str | None, recheck: bool = False) -> str:
        """The named set, else the task's default (as the ingress resolves a POST's), checked to exist."""
        if not recheck and self._resolved is not None:
            return self._resolved
        adapter_id = adapter or self.resolver.default_adapter(self.spec.name, recheck=recheck)
        self.resolver.store.folder(adapter_id)  # an invalid id: the store's own 404, as on the single server
        if not self.resolver.store.exists(adapter_id):
            raise AdapterNotFoundError(f"adapter '{adapter_id}' not found")
        self._resolved = adapter_id
        return adapter_id

    async def label(self, adapter: str | None) -> str:
        adapter_id = self._adapter_id(adapter)
        info = await asyncio.to_thread(self.resolver.store.info, adapter_id)  # hashes the files once: off the loop
        if info.task != self.spec.set_task:
            raise AdapterNotFoundError(f"adapter set {adapter_id!r} is a {info.task} set, not {self.spec.set_task}")
        return f"{adapter_id}@{info.sha256[:12]}"

    async def answer(self, clip: DecodedAudio, adapter: str | None, final: bool) -> tuple[dict[str, Any], Timings]:
        """The replica's answer to the POST of ``clip`` (a partial's audio too is counted there: it is a request).
        A default set that a replica finds gone is resolved again once, as the single server's lease does."""
        try:
            return await self._answer(clip, self._adapter_id(adapter))
        except ForwardedError as error:
            if adapter is not None or error.code != AdapterNotFoundError.code:
                raise
            return await self._answer(clip, self._adapter_id(None, recheck=True))

    async def _answer(self, clip: DecodedAudio, adapter_id: str) -> tuple[dict[str, Any], Timings]:
        wav = io.BytesIO()
        sf.write(wav, clip.waveform, clip.sample_rate, subtype="FLOAT", format="WAV")
        request = httpx.Request("POST", f"http://elp{self.spec.route}", data={"adapter": adapter_id},
                                files={"file": ("utterance.wav", wav.getvalue(), "audio/wav")})
        body = request.read()
        headers = [(k.lower(), v) for k, v in request.headers.raw if k.lower() != b"host"]
        response = await self.forward(self.spec.route, headers, body, adapter_id)
        payload = json.loads(response.body)
        if response.status_code != 200:
            error = payload.get("error", {})
            raise ForwardedError(response.status_code, error.get("code", "internal"), error.get("message", ""))
        timings = payload.pop("timings_ms", {})
        payload.pop("duration_s", None)
        return payload, {"queue": timings.get("queue", 0.0), "inference": timings.get("inference", 0.0)}
