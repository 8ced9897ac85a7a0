"""Live streams: ``WS /<endpoint>/stream`` for every task whose request is one clip (docs/API.md, "Live streams").

A client sends raw mono audio as it is recorded (16-bit, float or mu-law, 8-48 kHz: resampled to 16 kHz as it
arrives); the server cuts it into utterances with the voice detector (``elp.streaming.Endpointer``) and answers
each one when its pause is heard, through the same batching worker and task code as ``POST /<endpoint>``
(``server.answering``; on Ray Serve a replica answers: ``server.ray_streams``). Tasks with partial answers
(``TaskSpec.partial_answers``: ASR) also get the answer of the utterance still being spoken as it grows.

A session reads, cuts and answers in order, one message at a time, so a client that sends faster than the
server answers is slowed by its own socket (no queue grows here), and it holds at most one utterance of
audio. Limits (settings): streams open at once, seconds per stream, bytes per message, idle time. A page of
another site is refused before the handshake completes (CORS does not guard WebSockets).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from elp.streaming import Endpointer, EndpointSettings, StreamResampler, Utterance, mulaw_samples
from elp.tasks import TASKS, TaskSpec
from elp.voice_activity import SAMPLE_RATE
from server.answering import answer_clips
from server.audio import DecodedAudio
from server.errors import (
    AdapterNotFoundError,
    InvalidAudioError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerError,
)
from server.metrics import ServerMetrics
from server.security import is_foreign_origin
from server.service import InferenceService
from server.settings import Settings

logger = logging.getLogger("server.streaming")

#: how each message's bytes become float32 samples, and the bytes of one sample
ENCODINGS: dict[str, tuple[Callable[[bytes], np.ndarray], int]] = {
    "pcm_s16le": (lambda data: np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0), 2),
    "f32le": (lambda data: np.frombuffer(data, dtype="<f4").astype(np.float32), 4),
    "mulaw": (mulaw_samples, 1),  # G.711 mu-law, as phone lines carry it (8 kHz)
}
#: the highest sample rate a stream may declare (the lowest: the uploads' ELP_MIN_SAMPLE_RATE)
MAX_STREAM_RATE = 48000
# close codes (RFC 6455): 1000 done, 1007 bad data, 1008 policy (idle, bad parameter, foreign page),
# 1009 too large, 1011 server fault, 1013 try again later
CLOSE_NORMAL, CLOSE_BAD_DATA, CLOSE_POLICY = 1000, 1007, 1008
CLOSE_TOO_LARGE, CLOSE_FAULT, CLOSE_BUSY = 1009, 1011, 1013

#: the clock the session judges its backlog by (a module attribute: tests drive a fake one)
now_s = time.monotonic
#: a read that waited this long found nothing sent and unread (the session had caught up with the client)
CAUGHT_UP_WAIT_S = 0.005
#: partial answers are skipped while the session is this far behind the pace of speech (an overloaded server
#: serves the final answers first: each partial reads the whole utterance so far)
PARTIAL_BACKLOG_S = 0.5
#: the queue wait and inference time of one answer, ms
Timings = dict[str, float]
#: the end pauses a client may ask for (a shorter one would cut words at their stops, a longer one keeps
#: the speaker waiting)
MIN_END_PAUSE_S, MAX_END_PAUSE_S = 0.1, 5.0

stream_router = APIRouter()


class StreamClosing(Exception):
    """End the stream: send ``error`` (if any) as the last message, close with ``code``, count ``reason``."""

    def __init__(self, code: int, reason: str, error: ServerError | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


@dataclass(frozen=True)
class StreamParameters:
    """The query string of a stream: ``adapter``, ``encoding``, ``sample_rate``, ``partials``, ``end_pause_s``
    (this stream's end pause; unset: the deployment's)."""

    adapter: str | None
    encoding: str
    sample_rate: int
    partials: bool
    end_pause_s: float | None

    @classmethod
    def parse(cls, query: Any, spec: TaskSpec, min_rate: int) -> StreamParameters:
        unknown = set(query) - {"adapter", "encoding", "sample_rate", "partials", "end_pause_s"}
        if unknown:
            raise InvalidRequestError(f"unknown stream parameters: {sorted(unknown)}")
        encoding = query.get("encoding", "pcm_s16le")
        if encoding not in ENCODINGS:
            raise InvalidRequestError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding[:40]!r}")
        rate = query.get("sample_rate", str(SAMPLE_RATE))
        if not rate.isdigit() or not min_rate <= int(rate) <= MAX_STREAM_RATE:
            raise InvalidRequestError(f"sample_rate must be {min_rate}-{MAX_STREAM_RATE} Hz, got {rate[:20]!r}")
        partials = query.get("partials", "true").lower()
        if partials not in ("true", "false", "1", "0"):
            raise InvalidRequestError("partials must be true or false")
        end_pause_s = None
        if "end_pause_s" in query:
            try:
                end_pause_s = float(query["end_pause_s"])
            except ValueError:
                end_pause_s = math.nan
            if not MIN_END_PAUSE_S <= end_pause_s <= MAX_END_PAUSE_S:
                raise InvalidRequestError(f"end_pause_s must be {MIN_END_PAUSE_S}-{MAX_END_PAUSE_S} seconds")
        wants_partials = spec.partial_answers and partials in ("true", "1")
        return cls(query.get("adapter") or None, encoding, int(rate), wants_partials, end_pause_s)


def samples_of(data: bytes, encoding: str) -> np.ndarray:
    """A binary message as float32 samples; refused if it does not hold whole, finite samples."""
    decode, width = ENCODINGS[encoding]
    if len(data) % width:
        raise InvalidAudioError(f"a {encoding} message holds whole {width}-byte samples; got {len(data)} bytes")
    samples = decode(data)
    if not np.isfinite(samples).all():
        raise InvalidAudioError("the audio holds NaN or infinite samples")
    return samples


class UtteranceAnswers(Protocol):
    """Who answers a stream's utterances: this process's batching worker (:class:`ServiceAnswers`), or a Ray
    Serve replica (``server.ray_app``). Errors are the contract's ``ServerError`` s."""

    async def label(self, adapter: str | None) -> str:
        """``id@version`` of the set a stream naming ``adapter`` (None: the task's default) will use."""
        ...

    async def answer(self, clip: DecodedAudio, adapter: str | None, final: bool) -> tuple[dict[str, Any], Timings]:
        """The task's answer fields for ``clip`` with ``adapter`` (the set's label), and the queue and inference ms.
        ``final``: False for a partial answer (its audio is not counted again)."""
        ...


class ServiceAnswers:
    """Utterances answered by this process's batching worker, as ``POST /<endpoint>`` answers a clip."""

    def __init__(self, service: InferenceService, spec: TaskSpec) -> None:
        self.service, self.spec = service, spec

    async def label(self, adapter: str | None) -> str:
        lease = await self.service.lease(self.spec.name, adapter)
        lease.release()
        return lease.entry.label

    async def answer(self, clip: DecodedAudio, adapter: str | None, final: bool) -> tuple[dict[str, Any], Timings]:
        self.service.admit(1)
        lease = await self.service.lease(self.spec.name, adapter)
        with lease:
            answer, outcome = await answer_clips(self.service, self.spec, lease, [clip], counted=final)
        return {**answer, "adapter": lease.entry.label}, {"queue": outcome.queue_ms, "inference": outcome.inference_ms}


class StreamSession:
    """One open stream: reads messages, cuts utterances, answers them in order."""

    def __init__(self, websocket: WebSocket, spec: TaskSpec, settings: Settings, metrics: ServerMetrics,
                 answers: UtteranceAnswers) -> None:
        self.websocket, self.spec, self.answers = websocket, spec, answers
        self.settings, self.metrics = settings, metrics
        self.received_s = 0.0  # seconds of audio received
        # the last moment the session had read everything the client had sent (a read that waited), and the
        # audio received by then: how far the session is behind the pace of speech (:meth:`_behind_s`)
        self._caught_up_at, self._caught_up_s = now_s(), 0.0

    async def run(self) -> None:
        try:
            self.parameters = StreamParameters.parse(self.websocket.query_params, self.spec,
                                                     self.settings.min_sample_rate)
        except InvalidRequestError as error:
            raise StreamClosing(CLOSE_POLICY, "invalid", error) from None
        try:
            label = await self.answers.label(self.parameters.adapter)
        except ServerError as error:
            raise StreamClosing(CLOSE_POLICY, "invalid", error) from None
        s = self.settings
        end_pause_s = self.parameters.end_pause_s or s.stream_end_pause_s
        self.resampler = StreamResampler(self.parameters.sample_rate)
        self.endpointer = Endpointer(EndpointSettings(
            end_pause_s=end_pause_s, max_utterance_s=s.stream_max_utterance_s,
            partial_interval_s=s.stream_partial_interval_s if self.parameters.partials else 0.0))
        await self.websocket.send_json({
            "type": "ready", "adapter": label, "sample_rate": self.parameters.sample_rate,
            "encoding": self.parameters.encoding, "partials": self.parameters.partials,
            "end_pause_s": end_pause_s, "max_utterance_s": s.stream_max_utterance_s,
            "max_stream_s": s.stream_max_s,
        })
        while await self._next_message():
            pass

    async def _next_message(self) -> bool:
        """Read and answer one message; False once the stream has ended."""
        asked = now_s()
        try:
            message = await asyncio.wait_for(self.websocket.receive(), self.settings.stream_idle_timeout_s)
            if now_s() - asked > CAUGHT_UP_WAIT_S:  # nothing was waiting to be read: not behind
                self._caught_up_at, self._caught_up_s = asked, self.received_s
        except TimeoutError:
            raise StreamClosing(CLOSE_POLICY, "idle", RequestTimeoutError(
                f"no message for {self.settings.stream_idle_timeout_s:g} s: the stream is closed")) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            await self._audio(message["bytes"])
            return True
        if _command(message.get("text")) != "end":
            raise StreamClosing(CLOSE_POLICY, "invalid", InvalidRequestError(
                'send audio as binary messages, and {"type": "end"} as text to end the stream'))
        await self._answer_all(await asyncio.to_thread(self._finish))
        await self.websocket.send_json({"type": "end", "utterances": self.endpointer.index,
                                        "audio_s": round(self.received_s, 3)})
        await self.websocket.close(CLOSE_NORMAL)
        return False

    async def _audio(self, data: bytes) -> None:
        if len(data) > self.settings.stream_max_frame_bytes:
            raise StreamClosing(CLOSE_TOO_LARGE, "limit", PayloadTooLargeError(
                f"a stream message holds at most {self.settings.stream_max_frame_bytes} bytes; got {len(data)}"))
        try:
            samples = samples_of(data, self.parameters.encoding)
        except InvalidAudioError as error:
            raise StreamClosing(CLOSE_BAD_DATA, "invalid", error) from None
        self.received_s += len(samples) / self.parameters.sample_rate
        if self.received_s > self.settings.stream_max_s:
            await self._answer_all(await asyncio.to_thread(self._finish))
            raise StreamClosing(CLOSE_TOO_LARGE, "limit", PayloadTooLargeError(
                f"a live stream lasts at most {self.settings.stream_max_s:g} s of audio"))
        await self._answer_all(await asyncio.to_thread(self._push, samples))

    def _push(self, samples: np.ndarray) -> list[Utterance]:
        return self.endpointer.push(self.resampler.push(samples))

    def _finish(self) -> list[Utterance]:
        """The stream's last utterances (a partial view now would only precede its own final answer)."""
        last = [u for u in self.endpointer.push(self.resampler.flush()) if u.final]
        return last + self.endpointer.finish()

    def _behind_s(self) -> float:
        """Seconds of speech the client has (likely) sent that the session has not read yet: the time since it
        last caught up less the audio read since (negative for a client sending faster than speech)."""
        return (now_s() - self._caught_up_at) - (self.received_s - self._caught_up_s)

    async def _answer_all(self, utterances: list[Utterance]) -> None:
        heard = time.perf_counter()
        for utterance in utterances:
            await self._answer(utterance, heard)

    async def _answer(self, utterance: Utterance, heard: float) -> None:
        """Answer one utterance. A partial is skipped while the session is behind the speech or the server is
        overloaded; a final is never skipped: overloaded, it ends the stream with 1013 (come back later)."""
        if not utterance.final and self._behind_s() > PARTIAL_BACKLOG_S:
            return  # behind the pace of speech: the final answers come first, the partials would delay them
        clip = DecodedAudio(utterance.waveform, SAMPLE_RATE, self.parameters.sample_rate, 1)
        try:
            answer, timings = await self.answers.answer(clip, self.parameters.adapter, utterance.final)
        except ServerError as error:
            if not utterance.final:
                return
            busy = error.code in (OverloadedError.code, RequestTimeoutError.code)
            if busy or error.code == AdapterNotFoundError.code:  # busy, or the set was removed mid-stream
                raise StreamClosing(CLOSE_BUSY if busy else CLOSE_POLICY, "overloaded" if busy else "invalid",
                                    error) from None
            raise StreamClosing(CLOSE_FAULT, "error", error) from None
        kind = "result" if utterance.final else "partial"
        message = {"type": kind, "utterance": utterance.index, "start_s": round(utterance.start_s, 3),
                   "end_s": round(utterance.end_s, 3), **self.spec.answer_at(answer, utterance.start_s)}
        if utterance.final:
            delay_ms = (time.perf_counter() - heard) * 1000.0
            message["timings_ms"] = {"queue": round(timings["queue"], 3), "inference": round(timings["inference"], 3),
                                     "total": round(delay_ms, 3)}
            self.metrics.stream_answer_delay.labels(endpoint=self.spec.endpoint).observe(delay_ms / 1000.0)
        self.metrics.stream_utterances.labels(endpoint=self.spec.endpoint,
                                              kind="final" if utterance.final else "partial").inc()
        await self.websocket.send_json(message)


def _command(text: str | None) -> str | None:
    try:
        command = json.loads(text or "")
    except ValueError:
        return None
    return command.get("type") if isinstance(command, dict) else None


async def serve_stream(websocket: WebSocket, spec: TaskSpec, settings: Settings, metrics: ServerMetrics,
                       answers: UtteranceAnswers, open_streams: dict[str, int]) -> None:
    """One stream from handshake to close: refusals (a foreign page, too many streams), the session, then one
    close code and one counted reason. ``open_streams`` (by endpoint) is the process's, touched on its loop."""
    closed = metrics.streams_closed
    origin = websocket.headers.get("origin")
    if origin is not None and is_foreign_origin(origin, websocket.headers):
        closed.labels(endpoint=spec.endpoint, reason="refused").inc()
        await websocket.close(CLOSE_POLICY)  # before accept: the handshake is answered 403
        return
    await websocket.accept()
    if sum(open_streams.values()) >= settings.max_streams:
        await _close(websocket, CLOSE_BUSY, OverloadedError(
            f"{settings.max_streams} live streams are open, the most this server takes; retry later"))
        closed.labels(endpoint=spec.endpoint, reason="refused").inc()
        return
    open_streams[spec.endpoint] = open_streams.get(spec.endpoint, 0) + 1
    metrics.streams_open.labels(endpoint=spec.endpoint).inc()
    reason = "client"
    try:
        await StreamSession(websocket, spec, settings, metrics, answers).run()
    except StreamClosing as closing:
        reason = closing.reason
        await _close(websocket, closing.code, closing.error)
    except WebSocketDisconnect:
        pass
    except Exception:
        logger.exception("live stream on %s failed", spec.route)
        reason = "error"
        await _close(websocket, CLOSE_FAULT, ServerError("internal server error; the stream was closed"))
    finally:
        open_streams[spec.endpoint] -= 1
        metrics.streams_open.labels(endpoint=spec.endpoint).dec()
        closed.labels(endpoint=spec.endpoint, reason=reason).inc()


def stream_handler(spec: TaskSpec) -> Any:
    """The WebSocket route of one task on this server."""

    async def handler(websocket: WebSocket) -> None:
        service: InferenceService = websocket.app.state.service
        await serve_stream(websocket, spec, service.settings, service.metrics, ServiceAnswers(service, spec),
                           websocket.app.state.open_streams)

    handler.__name__ = f"{spec.endpoint}_stream"
    return handler


async def _close(websocket: WebSocket, code: int, error: ServerError | None) -> None:
    """Send the error (if the client still listens), then close; a client that has gone is no fault."""
    try:
        if error is not None:
            await websocket.send_json({"type": "error", "error": {"code": error.code, "message": error.message}})
        await websocket.close(code)
    except (WebSocketDisconnect, RuntimeError):
        pass


for _spec in TASKS:
    if _spec.streams:
        stream_router.add_api_websocket_route(f"{_spec.route}/stream", stream_handler(_spec),
                                              name=f"{_spec.endpoint}_stream")
