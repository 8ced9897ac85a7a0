"""The HTTP contract in-process (httpx.ASGITransport, lifespan running, tiny real elp models):
every endpoint, every error code followed by a request that succeeds, the adapter cache, enrolment,
mixed-task batching equal to solo answers."""

from __future__ import annotations

import asyncio
import io
import math
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.batch_policy import LengthRatioPolicy
from tests.server.helpers import (
    CLIP,
    assert_error,
    assert_serving,
    clip_files,
    make_settings,
    metric,
    running_app,
    wav_bytes,
)

pytestmark = pytest.mark.anyio

@pytest.fixture
def settings(tiny_store, tmp_path):
    backbone, store = tiny_store
    return make_settings(backbone, store, tmp_path, insecure_open_admin=True)


# -- endpoints ------------------------------------------------------------------------------------


async def test_every_task_endpoint_answers_per_contract(settings) -> None:
    async with running_app(settings) as (app, client):
        listing = {row["id"]: row for row in (await client.get("/adapters")).json()}

        def version_of(adapter_id: str) -> str:
            return f"{adapter_id}@{listing[adapter_id]['sha256'][:12]}"

        asr = (await client.post("/asr", files=clip_files())).json()
        assert isinstance(asr["text"], str) and asr["adapter"] == version_of("asr-default")
        assert asr["duration_s"] == pytest.approx(1.0) and {"decode", "queue", "inference", "total"} <= set(
            asr["timings_ms"])

        stereo_44k = wav_bytes(1.2, seed=2, sample_rate=44100, channels=2)
        verify = (await client.post("/verify", files=clip_files(reference=stereo_44k))).json()
        assert -1.0 <= verify["score"] <= 1.0 and verify["threshold"] == pytest.approx(0.7)
        assert verify["same_speaker"] == (verify["score"] >= verify["threshold"])
        assert verify["adapter"] == version_of("verify-default")

        emotion = (await client.post("/emotion", files=clip_files())).json()
        assert emotion["label"] in emotion["scores"] and math.isclose(sum(emotion["scores"].values()), 1.0,
                                                                      rel_tol=1e-5)
        assert emotion["adapter"] == version_of("emotion-default")

        intent = (await client.post("/intent", files=clip_files())).json()
        assert math.isclose(sum(intent["scores"].values()), 1.0, rel_tol=1e-5)
        assert "_".join(intent["slots"][s] for s in ("action", "object", "location")) == intent["intent"]

        alt = (await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})).json()
        assert alt["adapter"] == version_of("emotion-alt") and alt["scores"] != emotion["scores"]


async def test_listing_health_readiness_metrics_and_docs(settings) -> None:
    async with running_app(settings) as (_, client):
        rows = (await client.get("/adapters")).json()
        assert {r["id"] for r in rows} == {"asr-default", "verify-default", "emotion-default", "intent-default",
                                           "emotion-alt"}
        for row in rows:
            assert {"id", "task", "backbone", "num_params", "size_bytes", "sha256", "resident", "default"} <= set(row)
            assert row["num_params"] > 0 and row["size_bytes"] >= 4 * row["num_params"] // 2
            assert len(row["sha256"]) == 64
            assert row["default"] == row["resident"] == row["id"].endswith("-default")
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        text = (await client.get("/metrics")).text
        assert "elp_requests_total" in text and "elp_adapter_loads_total 4.0" in text
        assert (await client.get("/docs")).status_code == 200
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert {"/asr", "/verify", "/emotion", "/intent", "/adapters", "/healthz", "/readyz", "/metrics"} <= set(paths)


async def test_default_falls_back_to_a_set_marked_default(tiny_store, store_copy, tmp_path) -> None:
    import json

    (store_copy / "emotion-default").rename(store_copy / "emotion-main")
    config_path = store_copy / "emotion-main" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["training"]["default"] = True  # the free-form section of the strict config
    config_path.write_text(json.dumps(config))
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (_, client):
        answer = (await client.post("/emotion", files=clip_files())).json()
        assert answer["adapter"].startswith("emotion-main@")


async def test_a_default_removed_while_serving_gives_way_to_the_next_one(tiny_store, store_copy, tmp_path) -> None:
    """The default is not looked up on disk for every request; the lease finds it gone, the defaults
    are resolved again, and the request is served by the set that is the default now."""
    import shutil

    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (_, client):
        first = (await client.post("/emotion", files=clip_files())).json()
        assert first["adapter"].startswith("emotion-default@")
        shutil.rmtree(store_copy / "emotion-default")  # emotion-alt is now the task's only set
        answer = await client.post("/emotion", files=clip_files())
        assert answer.status_code == 200 and answer.json()["adapter"].startswith("emotion-alt@"), answer.text
        shutil.rmtree(store_copy / "emotion-alt")
        assert_error(await client.post("/emotion", files=clip_files()), 404, "adapter_not_found")


# -- errors: each code of the contract, then a normal request ------------------------------------


async def test_invalid_audio_unsupported_media_and_invalid_request(settings) -> None:
    async with running_app(settings) as (app, client):
        assert_error(await client.post("/asr", files=clip_files(b"definitely not audio")), 400, "invalid_audio")
        await assert_serving(client)
        assert_error(await client.post("/asr", files=clip_files(wav_bytes(0.05))), 400, "invalid_audio")
        assert_error(await client.post("/asr", files=clip_files(b"")), 400, "invalid_audio")
        await assert_serving(client)
        assert_error(await client.post("/asr", json={"file": "x"}), 415, "unsupported_media_type")
        assert_error(await client.post("/asr", files={"audio": ("a.wav", CLIP)}), 415, "unsupported_media_type")
        await assert_serving(client)
        assert_error(await client.post("/verify", files=clip_files()), 422, "invalid_request")
        both = await client.post("/verify", files=clip_files(reference=CLIP), data={"speaker": "alice"})
        assert_error(both, 422, "invalid_request")
        assert_error(await client.post("/asr", data={"file": "not a file"},
                                       files={"other": ("x", b"1")}), 422, "invalid_request")
        await assert_serving(client)
        assert_error(await client.get("/no/such/route"), 404, "not_found")
        assert_error(await client.put("/asr"), 405, "method_not_allowed")
        errors = {(sample.labels["endpoint"], sample.labels["error"]): sample.value
                  for family in app.state.metrics.registry.collect() if family.name == "elp_errors"
                  for sample in family.samples}
        assert errors[("asr", "invalid_audio")] == 3 and errors[("asr", "unsupported_media_type")] == 2
        assert errors[("verify", "invalid_request")] == 2 and errors[("unmatched", "not_found")] == 1


def silent_wav(seconds: float = 1.5, level: float = 0.0) -> bytes:
    """Digital silence, or seeded noise at ``level`` RMS (near-silence: a muted microphone's hiss)."""
    import soundfile as sf

    samples = (level * np.random.default_rng(5).standard_normal(int(seconds * 16000))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


async def test_silence_is_no_speaker_verification_and_enrolment_refuse_it(settings) -> None:
    """Two silent clips embed alike (cosine 1): /verify and enrolment answer 422 no_speech, naming the
    silent upload, and store nothing; other tasks still answer a silent clip (ASR: no words)."""
    silent, hiss = silent_wav(), silent_wav(level=1e-4)  # -80 dBFS
    async with running_app(settings) as (app, client):
        for files, field in ((clip_files(silent, reference=CLIP), "'file'"), (clip_files(CLIP, reference=hiss),
                                                                              "'reference'")):
            error = assert_error(await client.post("/verify", files=files), 422, "no_speech")
            assert field in error["message"] and "dBFS" in error["message"]
        assert_error(await client.post("/verify", files=clip_files(silent, reference=silent)), 422, "no_speech")
        # operators see it apart from other 422s
        assert metric(app, "elp_errors_total", {"endpoint": "verify", "error": "no_speech"}) == 3
        assert metric(app, "elp_errors_total", {"endpoint": "verify", "error": "invalid_request"}) == 0
        enrol = await client.post("/speakers/mute", files=[("file", ("a.wav", CLIP)), ("file", ("b.wav", silent))])
        assert "'file[1]'" in assert_error(enrol, 422, "no_speech")["message"]
        assert (await client.get("/speakers")).json() == []
        assert (await client.post("/asr", files=clip_files(silent))).status_code == 200
        spoken = await client.post("/verify", files=clip_files(CLIP, reference=wav_bytes(1.2, seed=3)))
        assert spoken.status_code == 200, spoken.text


async def test_the_speech_gate_follows_the_deployment_settings(tiny_store, tmp_path) -> None:
    """ELP_SPEECH_FLOOR_DBFS lowers the floor for quiet microphones; ELP_MIN_SPEECH_S=0 turns the gate off."""
    hiss = silent_wav(level=1e-4)  # -80 dBFS
    for overrides, status in (({"speech_floor_dbfs": -90.0}, 200), ({"min_speech_s": 0.0}, 200),
                              ({"min_speech_s": 5.0}, 422)):
        settings = make_settings(*tiny_store, tmp_path, insecure_open_admin=True, **overrides)
        async with running_app(settings) as (_, client):
            clips = clip_files(CLIP, reference=hiss if status == 200 else wav_bytes(1.2, seed=3))
            response = await client.post("/verify", files=clips)
            assert response.status_code == status, (overrides, response.text)


async def test_adapter_not_found_unknown_other_task_and_bad_ids(settings) -> None:
    async with running_app(settings) as (_, client):
        for adapter in ("nope", "emotion-alt", "../adapters", "a/b", ".hidden", "x" * 200):
            response = await client.post("/asr", files=clip_files(), data={"adapter": adapter})
            assert_error(response, 404, "adapter_not_found")
        assert_error(await client.post("/asr?adapter=nope", files=clip_files()), 404, "adapter_not_found")
        assert_error(await client.post("/emotion?adapter=emotion-alt", files=clip_files(), data={"adapter": "x"}),
                     422, "invalid_request")
        by_query = await client.post("/emotion?adapter=emotion-alt", files=clip_files())
        assert by_query.status_code == 200 and by_query.json()["adapter"].startswith("emotion-alt@")
        assert_error(await client.post("/adapters/nope/load"), 404, "adapter_not_found")
        escape = await client.delete("/adapters/..%2F..%2Fetc/resident")  # never reaches the file system
        assert escape.status_code == 404 and escape.json()["error"]["code"] in ("not_found", "adapter_not_found")
        await assert_serving(client)


async def test_payload_too_large_declared_lying_streamed_and_too_long(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_upload_bytes=100_000, max_duration_s=2.0)
    big = wav_bytes(4.0)  # ~128 kB of WAV, over the 100 kB limit
    async with running_app(settings) as (_, client):
        assert_error(await client.post("/asr", files=clip_files(big)), 413, "payload_too_large")
        await assert_serving(client)
        # a client that lies in Content-Length: the body is counted while it is read
        body, content_type = _multipart(big)
        lying = await client.post("/asr", content=body, headers={"content-type": content_type,
                                                                  "content-length": "1000"})
        assert_error(lying, 413, "payload_too_large")

        async def chunks():
            for start in range(0, len(body), 8192):
                yield body[start:start + 8192]

        streamed = await client.post("/asr", content=chunks(), headers={"content-type": content_type})
        assert_error(streamed, 413, "payload_too_large")
        await assert_serving(client)
        too_long = wav_bytes(2.5, sample_rate=8000)  # small file, but over the 2 s duration limit
        # (of a clip task: /asr takes long recordings, up to max_long_form_s: tests/server/test_long_form.py)
        assert_error(await client.post("/emotion", files=clip_files(too_long)), 413, "payload_too_large")
        await assert_serving(client)


def _multipart(data: bytes) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/asr", files=clip_files(data))
    return request.read(), request.headers["content-type"]


async def test_admin_calls_need_the_api_key(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key="s3cret")
    async with running_app(settings) as (_, client):
        assert_error(await client.post("/adapters/emotion-alt/load"), 401, "unauthorized")
        wrong = await client.post("/adapters/emotion-alt/load", headers={"X-API-Key": "nope"})
        assert_error(wrong, 401, "unauthorized")
        assert_error(await client.delete("/adapters/emotion-alt/resident"), 401, "unauthorized")
        await assert_serving(client)
        loaded = await client.post("/adapters/emotion-alt/load", headers={"X-API-Key": "s3cret"})
        assert loaded.status_code == 200 and loaded.json()["resident"] is True
        dropped = await client.delete("/adapters/emotion-alt/resident", headers={"Authorization": "Bearer s3cret"})
        assert dropped.status_code == 200 and dropped.json()["resident"] is False


async def test_mixed_burst_shares_batches_and_matches_solo_answers(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_wait_ms=300.0, max_batch_size=32, insecure_open_admin=True)
    clips = {i: wav_bytes(0.6 + 0.15 * i, seed=10 + i) for i in range(8)}
    requests = []
    for i, clip in clips.items():
        requests.append(("/asr", clip_files(clip), {}))
        requests.append(("/emotion", clip_files(clip), {"adapter": "emotion-alt" if i % 2 else "emotion-default"}))
        requests.append(("/intent", clip_files(clip), {}))
        requests.append(("/verify", clip_files(clip, reference=clips[(i + 1) % len(clips)]), {}))
    async with running_app(settings) as (app, client):
        worker = app.state.service.worker
        worker.max_wait_s = 0.0  # solo: each request runs alone at once
        solo = []
        for path, files, data in requests:
            response = await client.post(path, files=files, data=data)
            assert response.status_code == 200, response.text
            solo.append(response.json())
        def batch_counts() -> tuple[float, float]:
            total = metric(app, "elp_batch_tasks_count")
            return total, total - metric(app, "elp_batch_tasks_bucket", {"le": "1.0"})

        batches_before, mixed_before = batch_counts()
        assert mixed_before == 0
        # burst: wait for company, for the whole window, whatever the clip lengths. On a CPU the worker
        # only batches clips within 0.9x of each other's length, and the 8 lengths here (0.6-1.65 s)
        # then formed 7-8 batches, at the limit below; length grouping and the while-incoming wait
        # have their own tests (test_server_batching.py), this one is about mixing tasks.
        worker.max_wait_s = 0.3
        worker.policy = LengthRatioPolicy(worker.max_batch_rows, 0.0)  # any mix of lengths in one call
        worker.wait_only_while_incoming = False
        burst = await asyncio.gather(*(client.post(path, files=files, data=data) for path, files, data in requests))
        batches_after, mixed_after = batch_counts()
        assert batches_after - batches_before < len(requests) / 4, "requests were not batched together"
        assert mixed_after - mixed_before >= 1, "no batch mixed several tasks"
    for alone, together in zip(solo, burst, strict=True):
        together = together.json()
        assert together["adapter"] == alone["adapter"]
        for key in ("text", "label", "intent", "same_speaker"):
            assert together.get(key) == alone.get(key), key
        if "score" in alone:
            assert together["score"] == pytest.approx(alone["score"], abs=1e-4)
        for name, probability in (alone.get("scores") or {}).items():
            assert together["scores"][name] == pytest.approx(probability, abs=1e-4)


# -- enrolment ------------------------------------------------------------------------------------


async def test_enrol_list_verify_against_speaker_and_delete(settings) -> None:
    alice = [wav_bytes(1.0, seed=21), wav_bytes(1.3, seed=22)]
    async with running_app(settings) as (_, client):
        enrolled = await client.post("/speakers/alice", files=[("file", ("a1.wav", alice[0])),
                                                               ("file", ("a2.wav", alice[1]))])
        assert enrolled.status_code == 200, enrolled.text
        assert enrolled.json()["num_clips"] == 2 and enrolled.json()["adapter"].startswith("verify-default@")
        scores, threshold = enrolled.json()["clip_scores"], 0.5  # the tiny set has no calibrated threshold
        assert len(scores) == 2 and all(-1 <= s <= 1 and round(s, 2) == s for s in scores)
        assert set(enrolled.json()["outlier_clips"]) <= {i for i, s in enumerate(scores) if s <= threshold}
        listing = (await client.get("/speakers")).json()
        assert [row["speaker"] for row in listing] == ["alice"]
        stored = list(Path(settings.speakers_dir).glob("verify-default/*/alice.safetensors"))
        assert len(stored) == 1
        answer = await client.post("/verify", files=clip_files(alice[0]), data={"speaker": "alice"})
        assert answer.status_code == 200 and answer.json()["speaker"] == "alice"
        assert -1.0 <= answer.json()["score"] <= 1.0
        unknown = await client.post("/verify", files=clip_files(), data={"speaker": "bob"})
        assert_error(unknown, 404, "speaker_not_found")
        bad = await client.post("/speakers/bad$id", files=clip_files())
        assert_error(bad, 422, "invalid_request")
        deleted = await client.delete("/speakers/alice")
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        assert_error(await client.delete("/speakers/alice"), 404, "speaker_not_found")
        assert (await client.get("/speakers")).json() == []


async def test_an_asr_set_with_a_language_model_is_served_with_beam_search(tiny_store, store_copy, tmp_path) -> None:
    """The LM travels inside the set's safetensors: the store loads it, sizes it, and /asr decodes
    with it (the answer equals the library's own beam search on the same clip)."""
    import soundfile as sf
    import torch

    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from elp.decoding import WordBigramLM

    with_lm = AdapterSet.load(store_copy / "asr-default")
    with_lm.attach_language_model(WordBigramLM.build(["turn on the lights", "open the door"], alpha=0.5))
    with_lm.save(store_copy / "asr-lm")
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (_, client):
        response = await client.post("/asr", files=clip_files(), data={"adapter": "asr-lm"})
        assert response.status_code == 200, response.text
        listing = {r["id"]: r for r in (await client.get("/adapters")).json()}
    assert listing["asr-lm"]["size_bytes"] > listing["asr-default"]["size_bytes"] > 0  # LM counts in the budget
    assert listing["asr-lm"]["num_params"] == listing["asr-default"]["num_params"]  # but is no parameter
    model = MultiAdapterModel(load_backbone(str(tiny_store[0])))
    model.add_adapter_set("asr-lm", AdapterSet.load(store_copy / "asr-lm"))
    audio, _ = sf.read(io.BytesIO(CLIP), dtype="float32")
    expected = model.predict([torch.from_numpy(audio)], ["asr-lm"])[0].text
    assert response.json()["text"] == expected
