"""Live streams (WS /<endpoint>/stream): each utterance is answered as the same audio posted would be,
partial answers only where the task gives them, and every limit ends the stream with its error and close code."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.server.helpers import clip_files, make_settings, metric

RATE = 16000
SENTENCES = ("turn on the lights in the kitchen", "what is the weather like tomorrow")


def pcm16(samples: np.ndarray) -> bytes:
    """16-bit PCM on the scale soundfile reads and writes WAV files with (so posted clips hold the same samples)."""
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def in_stream_time(words: list[dict], start_s: float) -> list[dict]:
    """A posted clip's words with their times counted from the stream's start (where the clip began in it)."""
    return [{**w, "start_s": round(w["start_s"] + start_s, 3), "end_s": round(w["end_s"] + start_s, 3)}
            for w in words]


@pytest.fixture(scope="module")
def conversation(spoken_clip) -> np.ndarray:
    """Two sentences with pauses, quantised to 16 bits as a client would send them."""
    rng = np.random.default_rng(3)
    quiet = [(rng.standard_normal(int(s * RATE)) * 1e-3).astype(np.float32) for s in (0.6, 1.2, 0.9)]
    audio = np.concatenate([quiet[0], spoken_clip(SENTENCES[0]), quiet[1], spoken_clip(SENTENCES[1]), quiet[2]])
    return np.frombuffer(pcm16(audio), dtype="<i2").astype(np.float32) / 32768.0


@contextlib.contextmanager
def serving(tiny_store, tmp_path, **overrides) -> Iterator[TestClient]:
    from server.app import create_app

    with TestClient(create_app(make_settings(*tiny_store, tmp_path, **overrides))) as client:
        while client.get("/readyz").status_code != 200:
            pass
        yield client


def stream(client: TestClient, route: str, audio: np.ndarray, *, frame_s: float = 0.1, query: str = "",
           headers: dict[str, str] | None = None) -> list[dict]:
    """Send ``audio`` in frames, then end; every message the server sent, in order."""
    messages = []
    with client.websocket_connect(f"{route}/stream{query}", headers=headers or {}) as ws:
        messages.append(ws.receive_json())
        step = int(frame_s * RATE)
        for at in range(0, len(audio), step):
            ws.send_bytes(pcm16(audio[at:at + step]))
        ws.send_text(json.dumps({"type": "end"}))
        while messages[-1]["type"] != "end":
            messages.append(ws.receive_json())
    return messages


def closing_error(client: TestClient, route: str, send: list[bytes | str], query: str = "") -> tuple[dict, int]:
    """The error a stream ends with after ``send``, and its close code."""
    with client.websocket_connect(f"{route}/stream{query}") as ws:
        first = ws.receive_json()
        if first["type"] == "error":
            message = first
        else:
            for item in send:
                ws.send_bytes(item) if isinstance(item, bytes) else ws.send_text(item)
            message = ws.receive_json()
            while message["type"] not in ("error", "end"):
                message = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    return message, closed.value.code


def test_each_utterance_is_answered_as_the_same_audio_posted(tiny_store, tmp_path, conversation) -> None:
    with serving(tiny_store, tmp_path) as client:
        messages = stream(client, "/asr", conversation)
        ready, end = messages[0], messages[-1]
        assert ready["type"] == "ready" and ready["sample_rate"] == RATE and ready["partials"] is True
        assert ready["adapter"].startswith("asr-default@")
        results = [m for m in messages if m["type"] == "result"]
        assert [r["utterance"] for r in results] == [0, 1] and end["utterances"] == 2
        assert end["audio_s"] == pytest.approx(len(conversation) / RATE, abs=1e-3)
        for result in results:
            start, stop = round(result["start_s"] * RATE), round(result["end_s"] * RATE)
            posted = client.post("/asr", files=clip_files(wav(conversation[start:stop]))).json()
            assert result["text"] == posted["text"] and posted["words"]
            assert in_stream_time(posted["words"], result["start_s"]) == result["words"]
            assert result["adapter"] == posted["adapter"] and result["timings_ms"]["total"] > 0
        # partials: the open utterance's words as it grows, before its result
        for index, result in enumerate(results):
            partials = [m for m in messages if m["type"] == "partial" and m["utterance"] == index]
            assert partials and messages.index(partials[-1]) < messages.index(result)
            assert all(p["start_s"] == result["start_s"] and "timings_ms" not in p for p in partials)
            assert [p["end_s"] for p in partials] == sorted(p["end_s"] for p in partials)
        app = client.app
        assert metric(app, "elp_stream_utterances_total", {"endpoint": "asr", "kind": "final"}) == 2
        assert metric(app, "elp_stream_utterances_total", {"endpoint": "asr", "kind": "partial"}) >= 2
        assert metric(app, "elp_streams_closed_total", {"endpoint": "asr", "reason": "client"}) == 1
        assert metric(app, "elp_streams_open", {"endpoint": "asr"}) == 0
        assert metric(app, "elp_stream_answer_delay_seconds_count", {"endpoint": "asr"}) == 2
        streamed_s = sum(r["end_s"] - r["start_s"] for r in results)  # finals only: partials are not new audio
        posted_s = sum(r["end_s"] - r["start_s"] for r in results)
        assert metric(app, "elp_audio_seconds_total", {"endpoint": "asr"}) == pytest.approx(
            streamed_s + posted_s, abs=0.01)


def test_a_phone_line_in_mulaw_at_8_khz_is_resampled_as_it_arrives(tiny_store, tmp_path, conversation) -> None:
    from scipy.signal import resample_poly

    from elp.streaming import mulaw_samples

    buffer = io.BytesIO()
    sf.write(buffer, resample_poly(conversation, 1, 2), 8000, subtype="ULAW", format="RAW")
    line = buffer.getvalue()
    heard = resample_poly(mulaw_samples(line), 2, 1).astype(np.float32)  # what the server reads at 16 kHz
    with serving(tiny_store, tmp_path) as client:
        messages = []
        with client.websocket_connect("/asr/stream?encoding=mulaw&sample_rate=8000&partials=false") as ws:
            messages.append(ws.receive_json())
            for at in range(0, len(line), 160):  # 20 ms packets, as RTP carries them
                ws.send_bytes(line[at:at + 160])
            ws.send_text('{"type": "end"}')
            while messages[-1]["type"] != "end":
                messages.append(ws.receive_json())
        assert messages[0]["sample_rate"] == 8000
        assert messages[-1]["audio_s"] == pytest.approx(len(conversation) / RATE, abs=1e-3)
        results = [m for m in messages if m["type"] == "result"]
        assert len(results) == 2
        for result in results:
            start, stop = round(result["start_s"] * RATE), round(result["end_s"] * RATE)
            buffer = io.BytesIO()
            sf.write(buffer, heard[start:stop], RATE, subtype="FLOAT", format="WAV")
            posted = client.post("/asr", files=clip_files(buffer.getvalue())).json()
            assert result["text"] == posted["text"]
            assert in_stream_time(posted["words"], result["start_s"]) == result["words"]


def test_tasks_without_partial_answers_and_clients_that_want_none(tiny_store, tmp_path, conversation) -> None:
    with serving(tiny_store, tmp_path) as client:
        emotion = stream(client, "/emotion", conversation, frame_s=0.5)
        assert emotion[0]["partials"] is False and not [m for m in emotion if m["type"] == "partial"]
        results = [m for m in emotion if m["type"] == "result"]
        assert len(results) == 2
        start, stop = round(results[0]["start_s"] * RATE), round(results[0]["end_s"] * RATE)
        posted = client.post("/emotion", files=clip_files(wav(conversation[start:stop]))).json()
        assert results[0]["label"] == posted["label"] and results[0]["scores"] == posted["scores"]
        quiet = stream(client, "/asr", conversation, query="?partials=false&adapter=asr-default&end_pause_s=0.9")
        assert not [m for m in quiet if m["type"] == "partial"] and quiet[0]["end_pause_s"] == 0.9
        assert len([m for m in quiet if m["type"] == "result"]) == 2
        # tasks whose request is more than one clip have no stream route
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/verify/stream"):
            pass


def test_a_page_of_another_site_is_refused_before_the_handshake(tiny_store, tmp_path, conversation) -> None:
    with serving(tiny_store, tmp_path) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
                "/asr/stream", headers={"origin": "https://evil.example"}):
            pass
        assert refused.value.code == 1008
        own = stream(client, "/asr", conversation[:RATE], headers={"origin": "http://testserver"})
        assert own[0]["type"] == "ready"
        assert metric(client.app, "elp_streams_closed_total", {"endpoint": "asr", "reason": "refused"}) == 1


def test_every_limit_ends_the_stream_with_its_error_and_code(tiny_store, tmp_path, conversation) -> None:
    second = pcm16(conversation[:RATE])
    with serving(tiny_store, tmp_path, stream_max_s=2.0, stream_max_frame_bytes=8192,
                 stream_idle_timeout_s=0.3) as client:
        cases = {  # what is sent -> (error code, close code)
            "?sample_rate=4000": ([], "invalid_request", 1008),
            "?sample_rate=96000": ([], "invalid_request", 1008),
            "?sample_rate=fast": ([], "invalid_request", 1008),
            "?adapter=no-such-set": ([], "adapter_not_found", 1008),
            "?encoding=mp3": ([], "invalid_request", 1008),
            "": ([b"\x00\x01\x02"], "invalid_audio", 1007),
            "?encoding=f32le": ([np.array([np.nan] * 4, "<f4").tobytes()], "invalid_audio", 1007),
            "?x=1": ([], "invalid_request", 1008),
            "?end_pause_s=0.01": ([], "invalid_request", 1008),
            "?end_pause_s=soon": ([], "invalid_request", 1008),
        }
        for query, (send, code, close) in cases.items():
            assert closing_error(client, "/asr", send, query)[0]["error"]["code"] == code, query
            assert closing_error(client, "/asr", send, query)[1] == close, query
        too_large = closing_error(client, "/asr", [b"\x00" * 8194])
        assert too_large[0]["error"]["code"] == "payload_too_large" and too_large[1] == 1009
        too_long = closing_error(client, "/asr", [second[i:i + 8000] for i in range(0, len(second), 8000)] * 3)
        assert too_long[0]["error"]["code"] == "payload_too_large" and too_long[1] == 1009
        assert closing_error(client, "/asr", ['{"type": "pause"}'])[0]["error"]["code"] == "invalid_request"
        idle, code = closing_error(client, "/asr", [])  # nothing sent: the idle timeout
        assert idle["error"]["code"] == "timeout" and code == 1008
        app = client.app
        assert metric(app, "elp_streams_closed_total", {"endpoint": "asr", "reason": "limit"}) == 2
        assert metric(app, "elp_streams_closed_total", {"endpoint": "asr", "reason": "idle"}) == 1
        assert metric(app, "elp_streams_open", {"endpoint": "asr"}) == 0


def test_streams_beyond_max_streams_are_refused(tiny_store, tmp_path) -> None:
    with serving(tiny_store, tmp_path, max_streams=1) as client, client.websocket_connect("/asr/stream") as first:
        assert first.receive_json()["type"] == "ready"
        error, code = closing_error(client, "/emotion", [])
        assert error["error"]["code"] == "overloaded" and code == 1013
        first.send_text('{"type": "end"}')
        assert first.receive_json() == {"type": "end", "utterances": 0, "audio_s": 0.0}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _RealTimeClient:
    """A fake socket: a client sending 20 ms of audio every 20 ms of the fake clock. A read before the next
    message is due waits for it (the clock moves to its time); a read after gets it at once (it was waiting)."""

    def __init__(self, audio: np.ndarray, clock: _Clock) -> None:
        self.frames = [pcm16(audio[at:at + 320]) for at in range(0, len(audio), 320)]
        self.clock, self.read, self.sent = clock, 0, []
        self.query_params: dict[str, str] = {}

    async def receive(self) -> dict:
        if self.read == len(self.frames):
            self.read += 1
            return {"type": "websocket.receive", "text": '{"type": "end"}'}
        self.clock.now = max(self.clock.now, self.read * 0.02)
        self.read += 1
        return {"type": "websocket.receive", "bytes": self.frames[self.read - 1]}

    async def send_json(self, message: dict) -> None:
        self.sent.append(message)

    async def close(self, code: int) -> None:
        pass


class _SlowAnswers:
    """An answerer whose every answer takes ``seconds`` of the fake clock."""

    def __init__(self, clock: _Clock, seconds: float) -> None:
        self.clock, self.seconds, self.asked = clock, seconds, []

    async def label(self, adapter: str | None) -> str:
        return "asr-fake@0"

    async def answer(self, clip, adapter: str | None, final: bool):
        self.clock.now += self.seconds
        self.asked.append(final)
        return {"text": "", "adapter": "asr-fake@0"}, {"queue": 0.0, "inference": self.seconds * 1000}


@pytest.mark.parametrize("seconds", [0.05, 3.0])
def test_partials_wait_while_the_server_is_behind_the_speech_and_finals_never_do(
        conversation, monkeypatch, seconds) -> None:
    import asyncio

    from elp.tasks import get_task
    from server import streaming
    from server.metrics import ServerMetrics
    from server.settings import Settings

    clock = _Clock()
    monkeypatch.setattr(streaming, "now_s", clock)
    client, answers = _RealTimeClient(conversation, clock), _SlowAnswers(clock, seconds)
    session = streaming.StreamSession(client, get_task("asr"), Settings(stream_partial_interval_s=0.3),
                                      ServerMetrics(), answers)
    asyncio.run(session.run())
    assert answers.asked.count(True) == 2 and client.sent[-1]["type"] == "end"  # every final, in any case
    partials = answers.asked.count(False)
    if seconds < 0.5:  # keeping up: a partial every time one is due
        assert partials >= 4
    else:  # 3 s an answer: once behind, the partials of the rest of the utterance are skipped
        assert partials <= 2
