"""``POST /identify``: the clip against every speaker enrolled for the set, ranked as the library ranks them; the
best named only at its threshold; the key, the rate limit and an empty gallery; the client and the CLI."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import httpx
import pytest
import torch

from clients import AsyncELPClient
from clients.cli import main as cli_main
from elp.tasks import EnrolledVoice, TaskRequest, get_task
from elp.tasks.identification import ranked_scores
from tests.server.helpers import assert_error, clip_files, make_settings, metric, running_app, wav_bytes

pytestmark = pytest.mark.anyio
KEY = "identify-key"
AUTH = {"X-API-Key": KEY}
VOICES = {"alice": (21, 22), "bob": (31, 32), "carol": (41, 42)}  # wav_bytes seeds: each its own pitch


async def enrol_all(client: httpx.AsyncClient) -> None:
    for speaker, seeds in VOICES.items():
        files = [("file", (f"{seed}.wav", wav_bytes(1.2, seed=seed))) for seed in seeds]
        response = await client.post(f"/speakers/{speaker}", files=files, headers=AUTH)
        assert response.status_code == 200, response.text


async def test_the_clip_is_ranked_against_every_enrolled_speaker(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key=KEY)
    probe = wav_bytes(1.5, seed=22)  # like one of alice's enrolment clips, a little longer
    async with running_app(settings) as (app, client):
        assert_error(await client.post("/identify", files=clip_files(probe), headers=AUTH), 404, "speaker_not_found")
        await enrol_all(client)
        response = await client.post("/identify", files=clip_files(probe), headers=AUTH, data={"top_k": "2"})
        assert response.status_code == 200, response.text
        everyone = (await client.post("/identify", files=clip_files(probe), headers=AUTH,
                                      data={"top_k": "20"})).json()
        assert_error(await client.post("/identify", files=clip_files(probe), headers=AUTH, data={"top_k": "0"}),
                     422, "invalid_request")
        listed = (await client.post("/identify", files=clip_files(probe), headers=AUTH,
                                    data={"speakers": " bob,carol ,nobody", "top_k": "20"})).json()
        unlisted = (await client.post("/identify", files=clip_files(probe), headers=AUTH,
                                      data={"speakers": "nobody"})).json()
        scored = metric(app, "elp_answer_confidence_count", {"endpoint": "identify"})
        best = metric(app, "elp_answer_confidence_sum", {"endpoint": "identify"})
        version = app.state.service.speakers.list()[0].adapter_sha256
        gallery = app.state.service.speakers.gallery("verify-default", version)
        verified = {speaker: (await client.post("/verify", files=clip_files(probe), headers=AUTH,
                                                data={"speaker": speaker})).json()["score"] for speaker in VOICES}
    answer = response.json()
    assert answer["enrolled_speakers"] == 3 and answer["adapter"].startswith("verify-default@")
    assert [record.speaker for record in gallery] == sorted(VOICES)
    assert [c["speaker"] for c in answer["candidates"]] == [c["speaker"] for c in everyone["candidates"][:2]]
    # every enrolled speaker once, with the score /verify gives the same clip against that speaker, best first
    assert {c["speaker"]: c["score"] for c in everyone["candidates"]} == verified
    scores = [c["score"] for c in everyone["candidates"]]
    assert scores == sorted(scores, reverse=True) and answer["score"] == scores[0]
    # "speakers" narrows the comparison to those listed (ids not enrolled are no one)
    assert listed["enrolled_speakers"] == 2 and {c["speaker"] for c in listed["candidates"]} == {"bob", "carol"}
    assert [c for c in everyone["candidates"] if c["speaker"] != "alice"] == listed["candidates"]
    assert unlisted["enrolled_speakers"] == 0 and unlisted["candidates"] == [] and "speaker" not in unlisted
    assert "score" not in unlisted
    # operators see the best scores (the answer with nobody compared gives none)
    assert scored == 3 and best == pytest.approx(answer["score"] + everyone["score"] + listed["score"])
    # named only when the best reaches the threshold the answer states
    assert (answer.get("speaker") == answer["candidates"][0]["speaker"]) == (answer["score"] >= answer["threshold"])


def test_the_answer_names_the_best_voice_only_at_its_threshold() -> None:
    """The task itself on made-up embeddings: ranking, naming, the enrolment's duration in the threshold."""
    spec = get_task("identification")
    config = SimpleNamespace(duration_thresholds=[[0.0, 0.3], [2.0, 0.6]], threshold=None)
    axes = torch.eye(4)
    gallery = [EnrolledVoice("a", axes[0], 5.0), EnrolledVoice("b", axes[1], 1.0), EnrolledVoice("c", axes[2], 5.0)]
    probe = torch.tensor([0.1, 0.8, 0.0, 0.59])  # closest to b (cosine ~0.8), then a (~0.1)
    assert [index for index, _ in ranked_scores(probe, gallery)] == [1, 0, 2]

    def answer(voices: list[EnrolledVoice], probe_s: float = 3.0) -> dict:
        return spec.respond(TaskRequest(config=config, rows=[SimpleNamespace(embedding=probe)],
                                        durations_s=[probe_s], fields={"top_k": 2}, gallery=voices))

    short_enrolment = answer(gallery)  # b's enrolment lasts 1 s: the 0-2 s threshold applies
    assert short_enrolment["threshold"] == pytest.approx(0.3 + spec.threshold_offset, abs=1e-4)
    assert short_enrolment["speaker"] == "b" and [c["speaker"] for c in short_enrolment["candidates"]] == ["b", "a"]
    long_enrolment = answer([EnrolledVoice("b", axes[1], 5.0)])
    assert long_enrolment["threshold"] == pytest.approx(0.6 + spec.threshold_offset, abs=1e-4)
    short_probe = answer([EnrolledVoice("b", axes[1], 5.0)], probe_s=1.0)
    assert short_probe["threshold"] == pytest.approx(0.3 + spec.threshold_offset, abs=1e-4)
    unknown = answer([gallery[0], gallery[2]])  # b not enrolled: the best is a at ~0.1, and nobody is named
    assert unknown["speaker"] is None and unknown["candidates"][0]["speaker"] == "a"
    assert unknown["enrolled_speakers"] == 2


async def test_identify_needs_the_key_and_counts_against_the_rate_limit(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key=KEY, verify_rate_per_s=0.01, verify_burst=2)
    async with running_app(settings) as (_, client):
        await enrol_all(client)
        assert_error(await client.post("/identify", files=clip_files()), 401, "unauthorized")
        assert_error(await client.post("/identify", files=clip_files(), headers={"X-API-Key": "nope"}),
                     401, "unauthorized")
        for _ in range(2):
            assert (await client.post("/identify", files=clip_files(), headers=AUTH)).status_code == 200
        assert_error(await client.post("/identify", files=clip_files(), headers=AUTH), 429, "rate_limited")
    open_settings = make_settings(*tiny_store, tmp_path / "open")
    async with running_app(open_settings) as (_, client):  # no key configured: key routes are closed
        assert_error(await client.post("/identify", files=clip_files()), 403, "forbidden")


async def test_the_clients_and_the_cli_send_top_k(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key=KEY)
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://test", api_key=KEY, transport=transport) as client:
            for speaker, seeds in VOICES.items():
                await client.enroll_speaker(speaker, [wav_bytes(1.2, seed=seed) for seed in seeds])
            result = await client.identify(wav_bytes(1.5, seed=31), top_k=1)
            among = await client.identify(wav_bytes(1.5, seed=31), speakers=["bob", "carol"])
    assert result.enrolled_speakers == 3 and len(result.candidates) == 1
    assert among.enrolled_speakers == 2 and {c["speaker"] for c in among.candidates} == {"bob", "carol"}

    def answer(request: httpx.Request) -> httpx.Response:
        body = request.read().decode("latin-1")
        assert request.url.path == "/identify" and 'name="top_k"' in body
        return httpx.Response(200, json={
            "speaker": "bob", "score": 0.71, "threshold": 0.55, "enrolled_speakers": 3,
            "candidates": [{"speaker": "bob", "score": 0.71}], "adapter": "verify-default@x", "duration_s": 1.5,
            "timings_ms": {}})

    path = tmp_path / "probe.wav"
    path.write_bytes(wav_bytes(1.5, seed=31))
    assert cli_main(["identify", str(path), "--top-k", "1"], transport=httpx.MockTransport(answer)) == 0


def test_the_file_stores_gallery_sees_every_write_of_any_process(tmp_path) -> None:
    """The gallery is read once and kept while its folder is unchanged: enrolments, re-enrolments and deletions
    by this store or another process's (another instance on the same folder) are seen at the next read."""
    from server.speakers import SpeakerStore

    mine, theirs = SpeakerStore(tmp_path), SpeakerStore(tmp_path)
    version = "a" * 64
    assert mine.gallery("verify-default", version) == []
    mine.enroll("alice", "verify-default", version, [torch.ones(4)], 2.0)
    folder = next(tmp_path.glob("verify-default/*"))
    os.utime(folder, ns=(0, time.time_ns() - 10**10))  # written 10 s ago: old enough to be kept
    assert [r.speaker for r in mine.gallery("verify-default", version)] == ["alice"]
    assert folder in mine._galleries  # kept (a read now would be answered from it)
    theirs.enroll("bob", "verify-default", version, [torch.ones(4)], 3.0)
    theirs.enroll("alice", "verify-default", version, [-torch.ones(4)], 5.0)  # re-enrolled elsewhere
    seen = {r.speaker: r for r in mine.gallery("verify-default", version)}
    assert sorted(seen) == ["alice", "bob"] and seen["alice"].total_duration_s == 5.0
    assert float(seen["alice"].embedding.sum()) < 0
    theirs.delete("bob")
    assert [r.speaker for r in mine.gallery("verify-default", version)] == ["alice"]
    assert mine.gallery("verify-default", "b" * 64) == []  # another version: nobody
