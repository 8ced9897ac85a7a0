"""``POST /diarize``: a recording's windows run as rows of the verification set, and the answer equals the
library's clustering of the same windows' embeddings; the number of speakers can be sent; the route reads
verification sets only and has no live stream; the clients and the CLI send its options."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from clients import AsyncELPClient
from clients.cli import main as cli_main
from elp import MultiAdapterModel, load_backbone
from elp.adapter_set import AdapterSet
from elp.tasks import EnrolledVoice, TaskRequest, get_task
from tests.server.helpers import assert_error, clip_files, make_settings, metric, running_app

pytestmark = pytest.mark.anyio
RATE = 16000


def conversation(seed: int = 3) -> np.ndarray:
    """Six turns of two tone "voices" (110 Hz and 260 Hz harmonics) with pauses, quantised to 16 bits."""
    rng = np.random.default_rng(seed)
    parts = []
    for turn in range(6):
        t = np.arange(int(rng.uniform(1.5, 3.0) * RATE)) / RATE
        f0 = (110.0, 260.0)[turn % 2]
        voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
        parts += [0.2 * voice + 0.02 * rng.standard_normal(t.size), 1e-4 * rng.standard_normal(int(0.6 * RATE))]
    clip = np.concatenate(parts).astype(np.float32)
    return np.round(clip * 32767) / 32767


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


async def test_the_answer_is_the_librarys_clustering_of_the_windows(tiny_store, tmp_path) -> None:
    recording = conversation()
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings) as (app, client):
        response = await client.post("/diarize", files=clip_files(wav(recording)))
        assert response.status_code == 200, response.text
        answer = response.json()
        spans = app.state.service.splitters["diarization"].spans(recording, RATE)  # the task's windows, as served
        regions = app.state.service.splitters["diarization"].regions(recording, RATE)  # overlapping windows count once
        voiceless = metric(app, "elp_voiceless_audio_seconds_total", {"endpoint": "diarize"})
        assert voiceless == pytest.approx((recording.size - sum(b - a for a, b in regions)) / RATE)
        known = (await client.post("/diarize", files=clip_files(wav(recording)), data={"num_speakers": "2"})).json()
        explicit = await client.post("/diarize", files=clip_files(wav(recording)), data={"adapter": "verify-default"})
        assert explicit.status_code == 200 and explicit.json()["turns"] == answer["turns"]
    assert answer["adapter"].startswith("verify-default@") and answer["windows"] == len(spans) > 6
    model = MultiAdapterModel(load_backbone(str(tiny_store[0])))
    adapter_set = AdapterSet.load(tiny_store[1] / "verify-default")
    model.add_adapter_set("v", adapter_set)
    with torch.inference_mode():
        rows = [model.predict([torch.from_numpy(recording[a:b].copy())], ["v"])[0] for a, b in spans]
    spec = get_task("diarization")
    expected = spec.respond(TaskRequest(config=adapter_set.config, rows=rows, durations_s=[], fields={},
                                        fallbacks={"threshold": settings.verify_threshold},
                                        segments_s=[(a / RATE, b / RATE) for a, b in spans]))
    assert answer["speakers"] == expected["speakers"] and answer["threshold"] == expected["threshold"]
    assert [t["speaker"] for t in answer["turns"]] == [t["speaker"] for t in expected["turns"]]
    for mine, theirs in zip(answer["turns"], expected["turns"], strict=True):
        assert mine["start_s"] == pytest.approx(theirs["start_s"]) and mine["end_s"] == pytest.approx(theirs["end_s"])
    assert known["speaker_count"] == 2 and "threshold" not in known
    voiced = sum(t["end_s"] - t["start_s"] for t in known["turns"])  # the turns cover the voiced windows only
    assert 12 < voiced < recording.size / RATE


async def test_options_are_checked_and_only_verification_sets_answer(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    clip = wav(conversation()[: 5 * RATE])
    async with running_app(settings) as (app, client):
        too_few = await client.post("/diarize", files=clip_files(clip), data={"num_speakers": "0"})
        assert too_few.status_code == 422
        wrong_set = await client.post("/diarize", files=clip_files(clip), data={"adapter": "emotion-default"})
        assert_error(wrong_set, 404, "adapter_not_found")
        silent = await client.post("/diarize", files=clip_files(wav(np.zeros(3 * RATE, dtype=np.float32))))
        assert silent.status_code == 200 and silent.json()["speaker_count"] == 0 and silent.json()["turns"] == []
        paths = {getattr(route, "path", "") for route in app.routes}
        assert "/diarize" in paths and "/diarize/stream" not in paths and "/asr/stream" in paths
        schema = (await client.get("/openapi.json")).json()
        assert "num_speakers" in json.dumps(schema["components"]["schemas"])


async def test_without_long_recordings_diarization_still_reads_windows_within_the_clip_limit(tiny_store,
                                                                                              tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_long_form_s=0, max_duration_s=12)
    recording = conversation()
    async with running_app(settings) as (_, client):
        short = await client.post("/diarize", files=clip_files(wav(recording[: 10 * RATE])))
        assert short.status_code == 200 and short.json()["windows"] > 1 and short.json()["speaker_count"] >= 1
        assert_error(await client.post("/diarize", files=clip_files(wav(recording))), 413, "payload_too_large")


async def test_the_clients_send_the_number_of_speakers(tiny_store, tmp_path, capsys) -> None:
    settings = make_settings(*tiny_store, tmp_path)
    recording = wav(conversation())
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://elp.test", transport=transport) as client:
            result = await client.diarize(recording, num_speakers=3)
            assert result.speaker_count == 3 and len(result.speakers) == 3
    path = tmp_path / "talk.wav"
    path.write_bytes(recording)
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:  # the CLI's request, answered by hand
        sent.append(request.read())
        return httpx.Response(200, json={"speaker_count": 1, "speakers": [], "turns": [], "windows": 0,
                                         "adapter": "verify-default@x", "duration_s": 1.0, "timings_ms": {}})

    assert cli_main(["diarize", str(path), "--num-speakers", "2"], transport=httpx.MockTransport(answer)) == 0
    assert b'name="num_speakers"\r\n\r\n2\r\n' in sent[0]
    assert json.loads(capsys.readouterr().out)["speaker_count"] == 1


def test_turns_print_as_rttm(tmp_path, capsys) -> None:
    path = tmp_path / "team meeting.wav"
    path.write_bytes(wav(conversation()[:RATE]))
    turns = [{"start_s": 0.5, "end_s": 2.25, "speaker": "speaker_1"}, {"start_s": 3.0, "end_s": 4.0,
                                                                      "speaker": "speaker_2"}]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"speaker_count": 2, "speakers": [], "turns": turns, "windows": 4,
                                         "adapter": "verify-default@x", "duration_s": 5.0, "timings_ms": {}})

    assert cli_main(["--rttm", "diarize", str(path)], transport=httpx.MockTransport(answer)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "SPEAKER team_meeting 1 0.500 1.750 <NA> <NA> speaker_1 <NA> <NA>",
        "SPEAKER team_meeting 1 3.000 1.000 <NA> <NA> speaker_2 <NA> <NA>"]
    assert cli_main(["--rttm", "emotion", str(path)], transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"label": "a", "scores": {"a": 1.0}, "adapter": "e@x",
                                                  "duration_s": 1.0, "timings_ms": {}}))) == 2


def tone_voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    """One of conversation()'s tone "voices" alone (its enrolment clips)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    return (0.2 * voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


async def test_named_speakers_are_the_enrolled_ones_matched_one_to_one(tiny_store, tmp_path) -> None:
    """``name_speakers``: the key; each speaker found gets the enrolled voice it matches, as the library names them
    from the same windows and enrolments; nobody enrolled: no names; the who-said-what lines carry the names."""
    key = {"X-API-Key": "k"}
    settings = make_settings(*tiny_store, tmp_path, api_key="k")
    recording = conversation()
    async with running_app(settings) as (app, client):
        assert_error(await client.post("/diarize", files=clip_files(wav(recording)), data={"name_speakers": "true"}),
                     401, "unauthorized")
        unnamed = await client.post("/diarize", files=clip_files(wav(recording)), headers=key,
                                    data={"name_speakers": "true", "num_speakers": "2"})
        assert unnamed.status_code == 200 and all("name" not in s for s in unnamed.json()["speakers"])
        for speaker, f0 in (("low", 110.0), ("high", 260.0)):
            files = [("file", (f"{i}.wav", wav(tone_voice(f0, 2.0, seed=50 + i)))) for i in range(2)]
            assert (await client.post(f"/speakers/{speaker}", files=files, headers=key)).status_code == 200
        named = await client.post("/diarize", files=clip_files(wav(recording)), headers=key,
                                  data={"name_speakers": "true", "num_speakers": "2"})
        # name_among: only the people listed are candidates (and it asks for names by itself: the key)
        assert_error(await client.post("/diarize", files=clip_files(wav(recording)),
                                       data={"name_among": "low", "num_speakers": "2"}), 401, "unauthorized")
        among = (await client.post("/diarize", files=clip_files(wav(recording)), headers=key,
                                   data={"name_among": " low ,nobody", "num_speakers": "2"})).json()
        plain = await client.post("/diarize", files=clip_files(wav(recording)), data={"num_speakers": "2"})
        version = app.state.service.speakers.list()[0].adapter_sha256
        gallery = [EnrolledVoice(r.speaker, r.embedding, r.total_duration_s)
                   for r in app.state.service.speakers.gallery("verify-default", version)]
        spans = app.state.service.splitters["diarization"].spans(recording, RATE)
    answer = named.json()
    assert [{k: s[k] for k in ("speaker", "speech_s")} for s in answer["speakers"]] == plain.json()["speakers"]
    assert answer["turns"] == plain.json()["turns"]  # naming changes no turn
    model = MultiAdapterModel(load_backbone(str(tiny_store[0])))
    adapter_set = AdapterSet.load(tiny_store[1] / "verify-default")
    model.add_adapter_set("v", adapter_set)
    with torch.inference_mode():
        rows = [model.predict([torch.from_numpy(recording[a:b].copy())], ["v"])[0] for a, b in spans]
    expected = get_task("diarization").respond(TaskRequest(
        config=adapter_set.config, rows=rows, durations_s=[], fields={"num_speakers": 2}, gallery=gallery,
        fallbacks={"threshold": settings.verify_threshold}, segments_s=[(a / RATE, b / RATE) for a, b in spans]))
    assert [s.get("name") for s in answer["speakers"]] == [s.get("name") for s in expected["speakers"]]
    names = [s["name"] for s in answer["speakers"] if "name" in s]
    assert len(names) == len(set(names))  # one to one
    assert sorted(names) == ["high", "low"]  # each tone voice matched with its own enrolment
    only_low = {s["speaker"]: s.get("name") for s in among["speakers"]}
    assert sorted(filter(None, only_low.values())) == ["low"]  # "high" was not a candidate
    assert only_low == {s["speaker"]: (s.get("name") if s.get("name") == "low" else None) for s in answer["speakers"]}


def test_enrolled_voices_are_given_one_to_one_best_score_first() -> None:
    from elp.tasks.identification import assign_enrolled

    axes = torch.eye(3)
    gallery = [EnrolledVoice("a", axes[0]), EnrolledVoice("b", axes[1])]
    voices = [torch.tensor([1.0, 0.3, 0.0]), torch.tensor([1.0, 0.05, 0.0]), torch.tensor([0.0, 0.0, 1.0])]
    # both first voices are closest to a; the second is closer still, so the first gets b only if b clears the bar
    assert assign_enrolled(voices, gallery, lambda voice, index: 0.2) == [(1, pytest.approx(0.287, abs=1e-3)),
                                                                         (0, pytest.approx(0.9988, abs=1e-3)), None]
    assert assign_enrolled(voices, gallery, lambda voice, index: 0.5) == [None, (0, pytest.approx(0.9988, abs=1e-3)),
                                                                         None]


async def test_who_said_what_lines_carry_the_enrolled_names() -> None:
    diarized = {"speaker_count": 2, "speakers": [{"speaker": "speaker_1", "speech_s": 1.0, "name": "alice",
                                                  "score": 0.8}, {"speaker": "speaker_2", "speech_s": 1.0}],
                "turns": [{"start_s": 0.0, "end_s": 1.0, "speaker": "speaker_1"},
                          {"start_s": 1.2, "end_s": 2.0, "speaker": "speaker_2"}],
                "windows": 3, "adapter": "verify-default@x", "duration_s": 2.0, "timings_ms": {}}
    transcribed = {"text": "hi there", "adapter": "asr-default@x", "duration_s": 2.0, "timings_ms": {},
                   "words": [{"word": "hi", "start_s": 0.2, "end_s": 0.5, "confidence": 1.0},
                             {"word": "there", "start_s": 1.3, "end_s": 1.6, "confidence": 1.0}]}
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, json=diarized if request.url.path == "/diarize" else transcribed)

    async with AsyncELPClient("http://elp.test", transport=httpx.MockTransport(answer)) as client:
        lines = await client.who_said_what(b"RIFF", name_speakers=True)
    assert [line["speaker"] for line in lines] == ["alice", "speaker_2"]
    assert any(b'name="name_speakers"\r\n\r\ntrue\r\n' in body for body in sent)
