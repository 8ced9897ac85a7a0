"""OpenAI's audio API on the server (``POST /v1/audio/transcriptions``, ``GET /v1/models``): the same transcript
as ``/asr`` for the same upload, in each of OpenAI's answer shapes, with OpenAI's model names, and refusals for
what the sets cannot do. The ``openai`` SDK itself against a real process: tests/server/test_server_integration.py."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from elp.attribution import attribute
from elp.tasks import get_task
from server.openai_formats import compression_ratio
from tests.elp.test_long_form import speech_with_pauses
from tests.server.helpers import CLIP, assert_error, clip_files, make_settings, metric, running_app
from tests.server.test_diarize_route import conversation, tone_voice

pytestmark = pytest.mark.anyio
ROUTE = "/v1/audio/transcriptions"


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def recording() -> bytes:
    """~40 s of bursts and pauses: /asr reads it in segments."""
    clip, _ = speech_with_pauses(list(np.random.default_rng(3).uniform(2.0, 5.0, size=10)), seed=3)
    return _wav(clip)


async def test_each_answer_shape_carries_the_transcript_asr_gives(tiny_store, tmp_path, recording) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        asr = (await client.post("/asr", files=clip_files(recording))).json()
        assert asr["segments"] and asr["words"]  # the tiny set spells something: the shapes below are not empty
        duration = asr["duration_s"]

        plain = await client.post(ROUTE, files=clip_files(recording), data={"model": "whisper-1"})
        assert plain.status_code == 200, plain.text
        assert plain.json() == {"text": asr["text"], "usage": {"type": "duration", "seconds": round(duration, 3)}}
        assert plain.headers["x-elp-adapter"] == asr["adapter"]  # OpenAI's name: the default set answered
        assert "queue;dur=" in plain.headers["server-timing"]

        text = await client.post(ROUTE, files=clip_files(recording), data={"response_format": "text"})
        assert text.headers["content-type"].startswith("text/plain") and text.text == asr["text"] + "\n"

        verbose = (await client.post(ROUTE, files=clip_files(recording), data={
            "model": "asr-default", "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"]})).json()
        assert (verbose["task"], verbose["language"], verbose["text"]) == ("transcribe", "english", asr["text"])
        assert verbose["duration"] == pytest.approx(duration, abs=1e-3)
        assert [(s["start"], s["end"], s["text"]) for s in verbose["segments"]] == [
            (s["start_s"], s["end_s"], s["text"]) for s in asr["segments"]]
        assert [s["id"] for s in verbose["segments"]] == list(range(len(asr["segments"])))
        assert [(w["word"], w["start"], w["end"]) for w in verbose["words"]] == [
            (w["word"], w["start_s"], w["end_s"]) for w in asr["words"]]
        first = verbose["segments"][0]
        inside = [w for w in asr["words"] if first["start"] <= w["start_s"] < first["end"]]
        assert first["avg_logprob"] == pytest.approx(np.mean([np.log(w["confidence"]) for w in inside]), abs=1e-3)
        assert first["compression_ratio"] == pytest.approx(compression_ratio(first["text"]), abs=1e-4)
        assert (first["tokens"], first["temperature"], first["no_speech_prob"]) == ([], 0.0, 0.0)

        segments_only = (await client.post(ROUTE, files=clip_files(recording),
                                           data={"response_format": "verbose_json"})).json()
        assert "words" not in segments_only and segments_only["segments"] == verbose["segments"]  # OpenAI's default

        srt = (await client.post(ROUTE, files=clip_files(recording), data={"response_format": "srt"})).text
        cues = [block.split("\n") for block in srt.strip().split("\n\n")]
        assert [c[0] for c in cues] == [str(i) for i in range(1, len(cues) + 1)]
        assert " ".join(c[2] for c in cues) == " ".join(w["word"] for w in asr["words"])
        vtt = await client.post(ROUTE, files=clip_files(recording), data={"response_format": "vtt"})
        assert vtt.headers["content-type"].startswith("text/vtt") and vtt.text.startswith("WEBVTT\n\n")
        assert vtt.text.count(" --> ") == len(cues)

        # operators see these requests under the route, and their audio under the task
        assert metric(app, "elp_requests_total", {"endpoint": "openai_transcriptions", "code": "200"}) == 6
        assert metric(app, "elp_audio_seconds_total", {"endpoint": "asr"}) == pytest.approx(7 * duration, abs=0.01)


async def test_silence_is_an_empty_transcript_in_every_shape(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    silence = _wav(np.zeros(16000 * 2, dtype=np.float32))
    async with running_app(settings) as (_, client):
        verbose = (await client.post(ROUTE, files=clip_files(silence), data={
            "response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]})).json()
        assert (verbose["text"], verbose["segments"]) == ("", [])
        assert (await client.post(ROUTE, files=clip_files(silence), data={"response_format": "srt"})).text == ""
        vtt = await client.post(ROUTE, files=clip_files(silence), data={"response_format": "vtt"})
        assert vtt.text == "WEBVTT\n\n"


async def test_what_the_sets_cannot_do_is_refused(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (_, client):
        assert_error(await client.post(ROUTE, files=clip_files(), data={"language": "fr"}), 422, "invalid_request")
        for language in ("en", "English"):
            assert (await client.post(ROUTE, files=clip_files(), data={"language": language})).status_code == 200
        not_verbose = await client.post(ROUTE, files=clip_files(), data={"timestamp_granularities[]": "word"})
        assert "verbose_json" in assert_error(not_verbose, 422, "invalid_request")["message"]
        streamed_verbose = await client.post(ROUTE, files=clip_files(), data={"stream": "true",
                                                                              "response_format": "verbose_json"})
        assert "/asr/stream" in assert_error(streamed_verbose, 422, "invalid_request")["message"]
        assert_error(await client.post(ROUTE, files=clip_files(), data={"response_format": "subtitles"}),
                     422, "invalid_request")
        assert_error(await client.post(ROUTE, files=clip_files(), data={"model": "no-such-set"}),
                     404, "adapter_not_found")
        other_task = await client.post(ROUTE, files=clip_files(), data={"model": "emotion-default"})
        assert "not 'asr'" in assert_error(other_task, 404, "adapter_not_found")["message"]
        assert_error(await client.post(ROUTE, data={"model": "whisper-1"}), 415, "unsupported_media_type")
        assert_error(await client.post(ROUTE, files=clip_files(b"not audio")), 400, "invalid_audio")
        ignored = await client.post(ROUTE, files=clip_files(), data={"prompt": "kitchen lights", "temperature": "0.2"})
        assert ignored.json()["text"] == (await client.post("/asr", files=clip_files())).json()["text"]


async def test_models_lists_the_sets_the_route_answers_with(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (_, client):
        listing = (await client.get("/v1/models")).json()
        adapters = {row["id"]: row for row in (await client.get("/adapters")).json()}
        assert listing["object"] == "list"
        assert [m["id"] for m in listing["data"]] == [i for i, row in adapters.items() if row["task"] == "asr"]
        model = listing["data"][0]
        assert (model["object"], model["owned_by"], model["task"], model["default"]) == ("model", "elp", "asr", True)
        assert isinstance(model["created"], int) and model["created"] > 1_600_000_000
        assert (await client.get("/v1/models/asr-default")).json() == model
        alias = (await client.get("/v1/models/whisper-1")).json()
        assert alias == {**model, "id": "whisper-1", "alias_of": "asr-default"}
        assert_error(await client.get("/v1/models/emotion-default"), 404, "adapter_not_found")
        assert_error(await client.get("/v1/models/no-such"), 404, "adapter_not_found")
        schema = (await client.get("/openapi.json")).json()
        assert {"/v1/audio/transcriptions", "/v1/models"} <= set(schema["paths"])


def test_the_route_comes_from_the_registry() -> None:
    from server.openai_audio import OPENAI_TASK_OF_PATH, adapter_for_model

    asr = get_task("asr")
    assert {"/v1/audio/transcriptions": asr, "/v1/audio/translations": get_task("translation")} == OPENAI_TASK_OF_PATH
    assert [adapter_for_model(asr, m) for m in ("whisper-1", "gpt-4o-transcribe", None, " ", "asr-whisper")] == [
        None, None, None, None, "asr-whisper"]
    assert CLIP  # the shared clip the refusals above are sent with


async def test_diarized_json_gives_the_asr_words_to_the_diarize_turns(tiny_store, tmp_path) -> None:
    """Who said what in one request: the words of /asr given to the turns of /diarize for the same upload, as the
    client's attribution gives them, speakers labelled A, B, ... in order of first turn."""
    recording = _wav(conversation())
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        asr = (await client.post("/asr", files=clip_files(recording))).json()
        turns = (await client.post("/diarize", files=clip_files(recording), data={"num_speakers": "2"})).json()
        answer = await client.post(ROUTE, files=clip_files(recording), data={  # /diarize's options are taken too
            "model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json", "chunking_strategy": "auto",
            "num_speakers": "2"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-elp-speaker-adapter"] == turns["adapter"]  # the set that found the speakers
        assert answer.headers["x-elp-adapter"] == asr["adapter"]
        body = answer.json()
        windows = metric(app, "elp_audio_seconds_total", {"endpoint": "diarize"})
    assert asr["words"] and turns["speaker_count"] >= 2
    lines = attribute(asr["words"], turns["turns"])
    letters = {f"speaker_{i + 1}": "ABCDEFGHIJ"[i] for i in range(turns["speaker_count"])}
    assert body["segments"] == [{"type": "transcript.text.segment", "id": f"seg_{i}", "start": line["start_s"],
                                 "end": line["end_s"], "speaker": letters[line["speaker"]], "text": line["text"]}
                                for i, line in enumerate(lines)]
    assert (body["task"], body["text"]) == ("transcribe", asr["text"])
    assert body["duration"] == pytest.approx(asr["duration_s"], abs=1e-3)
    assert windows == pytest.approx(2 * asr["duration_s"], abs=0.01)  # both tasks ran on the upload, each once more


async def test_known_speakers_label_the_segments_they_match(tiny_store, tmp_path) -> None:
    """OpenAI's known_speaker_names[] / known_speaker_references[]: each reference clip (a data URL) is embedded as an
    enrolment would be and the speakers found are named by the library's one-to-one matching; nothing is stored and no
    key is needed."""
    recording = _wav(conversation())
    settings = make_settings(*tiny_store, tmp_path, api_key="k")
    references = {name: "data:audio/wav;base64," + base64.b64encode(_wav(tone_voice(f0, 2.0, seed=60))).decode()
                  for name, f0 in (("low", 110.0), ("high", 260.0))}
    fields = {"response_format": "diarized_json", "num_speakers": "2", "known_speaker_names[]": list(references),
              "known_speaker_references[]": list(references.values())}
    async with running_app(settings) as (app, client):
        answer = await client.post(ROUTE, files=clip_files(recording), data=fields)
        assert answer.status_code == 200, answer.text
        assert app.state.service.speakers.list() == []  # nothing enrolled
        unnamed = await client.post(ROUTE, files=clip_files(recording),
                                    data={"response_format": "diarized_json", "num_speakers": "2"})
        refusals = [
            ({**fields, "known_speaker_names[]": ["low"]}, "as many"),
            ({**fields, "known_speaker_names[]": ["low", "low"]}, "distinct"),
            ({**fields, "known_speaker_references[]": ["data:audio/wav;base64,@@", references["high"]]}, "base64"),
            ({**fields, "known_speaker_references[]": ["https://example.com/a.wav", references["high"]]}, "data URL"),
            ({**fields, "response_format": "json"}, "diarized_json"),
            ({**fields, "num_speakers": "0"}, "within 1-20"),
            ({**fields, "max_speakers": "many"}, "a number"),
        ]
        for data, says in refusals:
            refused = await client.post(ROUTE, files=clip_files(recording), data=data)
            assert says in assert_error(refused, 422, "invalid_request")["message"]
        silent = "data:audio/wav;base64," + base64.b64encode(_wav(np.zeros(32000, dtype=np.float32))).decode()
        no_voice = await client.post(ROUTE, files=clip_files(recording), data={
            **fields, "known_speaker_references[]": [silent, references["high"]]})
        assert "known_speaker_references[0]" in assert_error(no_voice, 422, "no_speech")["message"]
    named = answer.json()["segments"]
    assert {s["speaker"] for s in named} == {"low", "high"}  # each tone voice labelled by its own reference
    assert [(s["start"], s["end"], s["text"]) for s in named] == [
        (s["start"], s["end"], s["text"]) for s in unnamed.json()["segments"]]  # naming moves no segment


async def test_a_browser_recording_is_transcribed_as_asr_reads_it(tiny_store, tmp_path) -> None:
    """WebM/Opus, as a browser's MediaRecorder sends it to OpenAI-style endpoints: decoded (PyAV), answered as /asr
    answers the same upload."""
    from tests.server.test_server_audio import _recorded

    webm, _ = _recorded("webm", "libopus", 48000, 2.0)
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (_, client):
        files = {"file": ("speech.webm", webm, "audio/webm")}
        asr = (await client.post("/asr", files=files)).json()
        answer = await client.post(ROUTE, files=files, data={"response_format": "verbose_json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == asr["text"] and answer.json()["duration"] == pytest.approx(2.0, abs=0.15)


def _events(body: str) -> list[dict]:
    import json

    assert body.endswith("\n\n")
    return [json.loads(block.removeprefix("data: ")) for block in body.strip().split("\n\n")]


async def test_stream_sends_each_segments_text_as_it_is_read(tiny_store, tmp_path, recording) -> None:
    """``stream=true``: server-sent events, a delta per segment of a long recording in order, then the whole text,
    the one /asr answers; a clip read whole is one delta; silence is only the done event."""
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        asr = (await client.post("/asr", files=clip_files(recording))).json()
        streamed = await client.post(ROUTE, files=clip_files(recording), data={"stream": "true",
                                                                                "model": "gpt-4o-transcribe"})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = _events(streamed.text)
        short = _events((await client.post(ROUTE, files=clip_files(), data={"stream": "true"})).text)
        alone = (await client.post("/asr", files=clip_files())).json()
        silent = _events((await client.post(ROUTE, files=clip_files(_wav(np.zeros(32000, dtype=np.float32))),
                                            data={"stream": "true"})).text)
        counted = metric(app, "elp_audio_seconds_total", {"endpoint": "asr"})
        leases = app.state.service.cache.resident("asr-default")
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    nonempty = [s["text"] for s in asr["segments"] if s["text"]]
    assert [d.strip() for d in deltas] == nonempty  # one per segment with words, in order
    assert events[-1] == {"type": "transcript.text.done", "text": asr["text"],
                          "usage": {"type": "duration", "seconds": round(asr["duration_s"], 3)}}
    assert "".join(deltas) == asr["text"]
    assert [e["type"] for e in short] == ["transcript.text.delta", "transcript.text.done"]
    assert short[0]["delta"] == short[1]["text"] == alone["text"]
    assert silent == [{"type": "transcript.text.done", "text": "", "usage": {"type": "duration", "seconds": 2.0}}]
    assert counted == pytest.approx(2 * asr["duration_s"] + 2 * 1.0 + 2.0, abs=0.01)  # streamed audio counted too
    assert leases is not None and leases.leases == 0  # every stream gave its set back


async def test_an_error_after_the_first_event_is_an_error_event(tiny_store, tmp_path, recording, monkeypatch) -> None:
    """Once events flow the status is sent: a failure later (here the deadline, after the first segment) ends the
    stream with an ``error`` event, which OpenAI's SDKs raise, and the set is given back."""
    from server.errors import RequestTimeoutError
    from server.service import InferenceService

    real = InferenceService.iter_plan

    async def first_then_timeout(self, *args, **kwargs):
        async for rows in real(self, *args, **kwargs):
            yield rows
            raise RequestTimeoutError("no answer within 1 s")

    monkeypatch.setattr(InferenceService, "iter_plan", first_then_timeout)
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        events = _events((await client.post(ROUTE, files=clip_files(recording), data={"stream": "true"})).text)
        resident = app.state.service.cache.resident("asr-default")
    assert [e["type"] for e in events] == ["transcript.text.delta", "error"]
    assert events[-1]["error"] == {"code": "timeout", "message": "no answer within 1 s"}
    assert resident.leases == 0
