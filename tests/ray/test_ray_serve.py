"""The Ray Serve app for real: a local Ray instance (2 CPUs), two replicas with half a CPU each, the
tiny backbone, PostgreSQL speakers. Adapter affinity from the replicas' own load counters, the HTTP
contract against the single server's answers, a mixed burst equal to solo answers, a speaker
enrolled on one replica verified on the other, and a replica killed during traffic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ray.support import add_emotion_sets, ray_serve, wait_for
from tests.server.helpers import copy_store, make_settings, running_app, wav_bytes
from tests.server.postgres import postgres_server

pytest.importorskip("ray.serve")

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EXTRA_SETS = 6
MODELS_PER_REPLICA = 3  # two replicas: exactly room for the extra sets once each, if routing keeps affinity
CLIP = wav_bytes(1.0, seed=1)
KEY = "ray-test-key"  # voiceprints and admin are behind the key, on replicas as on the single server
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def stack(tiny_store, tmp_path_factory):
    backbone, source = tiny_store
    root = tmp_path_factory.mktemp("ray")
    store = copy_store(source, root / "adapters")
    extra = add_emotion_sets(backbone, store, EXTRA_SETS)
    with postgres_server() as speakers_url:
        args = dict(backbone=str(backbone), adapters_dir=str(store), speakers_dir=str(root / "speakers"),
                    speakers_url=speakers_url, api_key=KEY, max_wait_ms=5.0, log_level="warning", torch_threads=1,
                    decode_workers=1, ray_min_replicas=2, ray_max_replicas=2, ray_replica_cpus=0.5,
                    ray_ingress_cpus=0.25, ray_models_per_replica=MODELS_PER_REPLICA, ray_metrics_push_s=0.3,
                    ray_health_check_period_s=1.0,
                    speech_detector="level")  # tone stand-ins (wav_bytes): see tests/server/helpers.make_settings
        with ray_serve(args) as deployment:
            yield deployment, store, extra, root


# -- helpers ---------------------------------------------------------------------------------------


def forwarded(method: str, path: str, **kwargs: Any):
    """A ForwardedRequest with exactly the bytes httpx would send."""
    from server.ray_forwarding import ForwardedRequest

    request = httpx.Request(method, f"http://elp{path}", **kwargs)
    body = request.read()
    headers = [(k.lower(), v) for k, v in request.headers.raw if k.lower() != b"host"]
    return ForwardedRequest(method, path, b"", headers, body)


def replica_views(deployment) -> dict[str, set[str]]:
    """Every replica's resident sets (its own GET /adapters), asking until both have answered."""
    import json

    handle = deployment.replica_handle()
    views: dict[str, set[str]] = {}
    for _ in range(60):
        answer = handle.forward.remote(forwarded("GET", "/adapters")).result(timeout_s=30)
        views[answer.replica_id] = {row["id"] for row in json.loads(answer.body) if row["resident"]}
        if len(views) == 2:
            return views
    raise AssertionError(f"only replicas {list(views)} answered")


def loads_per_replica(deployment) -> dict[str, float]:
    """Each live replica's elp_adapter_loads_total, from a report made after this call started."""
    from server.ray_metrics import sample_value

    board = deployment.board_handle()
    asked = time.time()

    def fresh():
        snapshot = board.snapshot.remote().result(timeout_s=30)
        if len(snapshot) == 2 and all(reported > asked for reported, _ in snapshot.values()):
            return snapshot
        return None

    snapshot = wait_for(fresh, 30, "fresh metric reports of both replicas")
    return {rid: sample_value(text, "elp_adapter_loads_total") or 0.0 for rid, (_, text) in snapshot.items()}


def new_loads(before: dict[str, float], after: dict[str, float]) -> int:
    return int(sum(after[rid] - before.get(rid, 0.0) for rid in after))


def emotion(client: httpx.Client, adapter: str, clip: bytes = CLIP) -> httpx.Response:
    return client.post("/emotion", files={"file": ("c.wav", clip, "audio/wav")}, data={"adapter": adapter})


def normalised(value: Any) -> Any:
    """An answer without what legitimately differs run to run (timings, per-process residency, time)."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if k not in {"timings_ms", "resident", "created_at"}}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


# -- tests (in this order: affinity first, on replicas that hold only their pinned defaults) ----------


def test_adapter_sets_stay_on_the_replica_that_loaded_them(stack) -> None:
    deployment, _, extra, _ = stack
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        start = loads_per_replica(deployment)
        for adapter in extra:  # round 1: every set is new, each loads exactly once somewhere
            assert emotion(client, adapter).status_code == 200
        round1 = loads_per_replica(deployment)
        assert new_loads(start, round1) == EXTRA_SETS
        for adapter in extra:  # round 2: at most the sets a stale routing view misplaced move once
            assert emotion(client, adapter).status_code == 200
        round2 = loads_per_replica(deployment)
        assert new_loads(round1, round2) <= 2
        for adapter in extra:  # round 3: settled: 6 sets in 2 x 3 slots, each where it is resident
            assert emotion(client, adapter).status_code == 200
        round3 = loads_per_replica(deployment)
        assert new_loads(round2, round3) == 0, "routing lost adapter affinity"
    views = replica_views(deployment)
    placements = [rid for adapter in extra for rid, resident in views.items() if adapter in resident]
    assert len(placements) == EXTRA_SETS, views  # each set on exactly one replica
    assert all(len(set(extra) & resident) == MODELS_PER_REPLICA for resident in views.values()), views
    for resident in views.values():  # defaults stay pinned on every replica
        assert {"asr-default", "verify-default", "emotion-default", "intent-default"} <= resident


def test_a_burst_for_one_set_does_not_evict_the_others(stack) -> None:
    deployment, _, extra, _ = stack
    before = loads_per_replica(deployment)

    async def burst_then_each() -> None:
        async with httpx.AsyncClient(base_url=deployment.url, timeout=60) as client:
            clips = [wav_bytes(1.0, seed=200 + i) for i in range(16)]
            answers = await asyncio.gather(*(client.post("/emotion", files={"file": ("c.wav", clip)},
                                                         data={"adapter": extra[0]}) for clip in clips))
            assert [a.status_code for a in answers] == [200] * len(clips)
            for adapter in extra:
                response = await client.post("/emotion", files={"file": ("c.wav", CLIP)}, data={"adapter": adapter})
                assert response.status_code == 200

    asyncio.run(burst_then_each())
    assert new_loads(before, loads_per_replica(deployment)) == 0
    views = replica_views(deployment)
    assert all(any(adapter in resident for resident in views.values()) for adapter in extra), views


def _contract_requests(extra: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    clip = {"file": ("c.wav", CLIP, "audio/wav")}
    long_clip = {"file": ("long.wav", wav_bytes(31.0, seed=3), "audio/wav")}
    return [
        ("POST", "/asr", {"files": clip}),
        ("POST", "/verify", {"files": {**clip, "reference": ("r.wav", wav_bytes(1.2, seed=2))}}),
        ("POST", "/emotion", {"files": clip}),
        ("POST", "/emotion", {"files": clip, "data": {"adapter": "emotion-alt"}}),
        ("POST", "/emotion", {"files": clip, "data": {"adapter": extra[1]}}),
        ("POST", "/intent", {"files": clip}),
        ("POST", "/diarize", {"files": {"file": ("d.wav", wav_bytes(4.0, seed=5), "audio/wav")},
                              "data": {"num_speakers": "2"}}),  # answered with a verification set's windows
        # OpenAI's audio API: OpenAI's model name routes to the default set, a set id to that set
        ("POST", "/v1/audio/transcriptions", {"files": clip, "data": {"model": "whisper-1",
                                                                      "response_format": "verbose_json"}}),
        ("POST", "/v1/audio/transcriptions", {"files": clip, "data": {"model": "asr-default",
                                                                      "response_format": "srt"}}),
        ("POST", "/v1/audio/transcriptions", {"files": clip, "data": {"response_format": "diarized_json"}}),
        ("POST", "/v1/audio/transcriptions", {"files": clip, "data": {"model": "emotion-default"}}),  # 404
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models/whisper-1", {}),
        ("POST", "/v1/audio/transcriptions", {"files": clip, "data": {"stream": "true"}}),  # events, relayed
        ("GET", "/adapters", {}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/", {}),  # the try-it page (HTML)
        ("POST", "/adapters/emotion-alt/load", {}),
        ("DELETE", "/adapters/emotion-alt/resident", {}),
        ("GET", "/speakers", {}),
        # the error shapes
        ("POST", "/asr", {"json": {"file": "nope"}}),  # 415: not multipart
        ("POST", "/asr", {"files": {"other": ("c.wav", CLIP)}}),  # 415: no file field
        ("POST", "/asr", {"files": {"file": ("c.wav", b"not audio at all" * 20)}}),  # 400
        ("POST", "/asr", {"files": {"file": ("c.wav", wav_bytes(0.05, seed=4))}}),  # 400: too short
        ("POST", "/emotion", {"files": long_clip}),  # 413: over the duration limit
        ("POST", "/asr", {"files": clip, "data": {"adapter": "nope"}}),  # 404
        ("POST", "/asr", {"files": clip, "data": {"adapter": "emotion-default"}}),  # 404: other task
        ("POST", "/asr", {"files": clip, "data": {"adapter": "../etc"}}),  # 404: invalid id
        ("POST", "/verify", {"files": clip}),  # 422: neither reference nor speaker
        ("POST", "/diarize", {"files": clip, "data": {"num_speakers": "0"}}),  # 422: out of range
        ("POST", "/identify", {"files": clip}),  # 404 speaker_not_found: nobody enrolled for the set
        ("POST", "/adapters/nope/load", {}),  # 404
        ("DELETE", "/speakers/nobody", {}),  # 404 speaker_not_found
        ("GET", "/no/such/path", {}),  # 404
    ]


@pytest.mark.anyio
async def test_every_endpoint_answers_as_the_single_server_does(stack, tiny_store, tmp_path: Path) -> None:
    deployment, store, extra, _ = stack
    settings = make_settings(tiny_store[0], store, tmp_path, torch_threads=1, api_key=KEY)
    async with running_app(settings) as (_, single), \
            httpx.AsyncClient(base_url=deployment.url, timeout=60, headers=AUTH) as ray_client:
        single.headers.update(AUTH)
        for method, path, kwargs in _contract_requests(extra):
            expected = await single.request(method, path, **kwargs)
            got = await ray_client.request(method, path, **kwargs)
            what = f"{method} {path} {kwargs.get('data')}"
            assert got.status_code == expected.status_code, (what, got.text, expected.text)
            assert got.headers["content-type"] == expected.headers["content-type"], what
            assert got.headers.get("retry-after") == expected.headers.get("retry-after"), what
            if "json" in expected.headers["content-type"]:
                assert normalised(got.json()) == normalised(expected.json()), what
            else:
                assert got.content == expected.content, what
            if got.status_code >= 400:
                assert set(got.json()) == {"error"} and set(got.json()["error"]) == {"code", "message"}
        metrics = (await ray_client.get("/metrics")).text
    assert 'elp_adapter_loads_total{replica="' in metrics
    assert "elp_batch_adapter_sets_bucket{replica=" in metrics


@pytest.mark.anyio
async def test_an_event_stream_is_relayed_as_it_is_made(stack, tiny_store, tmp_path: Path) -> None:
    """OpenAI's ``stream=true`` through the ingress: a chunked answer (not one body collected first) with the single
    server's events, for a recording long enough to be read in segments."""
    deployment, store, _, _ = stack
    fields = {"files": {"file": ("long.wav", wav_bytes(45.0, seed=7), "audio/wav")}, "data": {"stream": "true"}}
    settings = make_settings(tiny_store[0], store, tmp_path, torch_threads=1, api_key=KEY)
    async with running_app(settings) as (_, single), httpx.AsyncClient(base_url=deployment.url, timeout=120) as ray:
        expected = await single.post("/v1/audio/transcriptions", **fields)
        async with ray.stream("POST", "/v1/audio/transcriptions", **fields) as got:
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/event-stream")
            assert "content-length" not in got.headers and got.headers.get("transfer-encoding") == "chunked"
            body = b"".join([chunk async for chunk in got.aiter_raw()])
    assert body == expected.content and body.endswith(b"\n\n")
    assert b'"transcript.text.done"' in body


@pytest.mark.anyio
async def test_a_mixed_burst_answers_as_solo_requests_do(stack) -> None:
    deployment, _, extra, _ = stack
    requests = [("/emotion", extra[i % EXTRA_SETS], wav_bytes(1.0 + 0.05 * (i % 3), seed=300 + i)) for i in range(12)]
    requests += [("/asr", None, wav_bytes(1.1, seed=400 + i)) for i in range(4)]
    requests += [("/intent", None, wav_bytes(0.9, seed=500 + i)) for i in range(4)]
    requests += [("/emotion", "emotion-alt", wav_bytes(1.0, seed=600 + i)) for i in range(4)]

    async def ask(client: httpx.AsyncClient, path: str, adapter: str | None, clip: bytes) -> dict:
        fields = {"adapter": adapter} if adapter else {}
        response = await client.post(path, files={"file": ("c.wav", clip)}, data=fields)
        assert response.status_code == 200, response.text
        return normalised(response.json())

    async with httpx.AsyncClient(base_url=deployment.url, timeout=120) as client:
        solo = [await ask(client, *request) for request in requests]
        together = await asyncio.gather(*(ask(client, *request) for request in requests))
    assert together == solo


def test_a_speaker_enrolled_on_one_replica_verifies_on_another(stack) -> None:
    """Enrol through one replica, then steer verifications with other sets' multiplexed ids until one
    is answered by another replica; the speaker store (PostgreSQL, a real server process) is all the
    two replicas share."""
    import json

    deployment, _, extra, root = stack
    handle = deployment.replica_handle()
    alice = [wav_bytes(1.0, seed=21), wav_bytes(1.3, seed=22)]
    enrol = forwarded("POST", "/speakers/alice", headers=AUTH,
                      files=[("file", ("a1.wav", alice[0])), ("file", ("a2.wav", alice[1]))])
    enrolled = handle.options(multiplexed_model_id=extra[0]).forward.remote(enrol).result(timeout_s=60)
    assert enrolled.status == 200, enrolled.body
    check = forwarded("POST", "/verify", headers=AUTH, files={"file": ("c.wav", alice[0])}, data={"speaker": "alice"})
    for attempt in range(40):
        steer = extra[attempt % EXTRA_SETS]
        verified = handle.options(multiplexed_model_id=steer).forward.remote(check).result(timeout_s=60)
        if verified.replica_id != enrolled.replica_id:
            break
    else:
        raise AssertionError("every verification went to the enrolling replica")
    assert verified.status == 200, verified.body
    assert json.loads(verified.body)["speaker"] == "alice" and json.loads(verified.body)["score"] > 0.5
    assert not (root / "speakers").exists()  # nothing in a replica's own folder
    with httpx.Client(base_url=deployment.url, timeout=60, headers=AUTH) as client:
        assert client.delete("/speakers/alice").json()["deleted"] == 1


async def _traffic_while_killing(url: str, sets: list[str], victim: str) -> list[httpx.Response]:
    """Four clients in flight; the victim replica is killed once the seventh request has started."""
    import ray

    started = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(index: int, adapter: str) -> httpx.Response:
            if index == 6:
                started.set()
            return await client.post("/emotion", files={"file": ("c.wav", CLIP)}, data={"adapter": adapter})

        async def kill_when_started() -> None:
            await started.wait()
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)

        limiter = asyncio.Semaphore(4)

        async def limited(index: int, adapter: str) -> httpx.Response:
            async with limiter:
                return await one(index, adapter)

        answers, _ = await asyncio.wait_for(asyncio.gather(
            asyncio.gather(*(limited(i, a) for i, a in enumerate(sets))), kill_when_started()), 120)
    return answers


def test_a_replica_killed_during_traffic(stack) -> None:
    """Requests in flight when a replica dies are retried on the other or refused with 503; none hang,
    every 200 comes from the set it asked for; the controller starts a replacement."""
    deployment, _, extra, _ = stack
    sets = [extra[i % EXTRA_SETS] for i in range(36)]
    victim = deployment.replica_actor_names()[0]
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        solo = {a: emotion(client, a).json() for a in extra}
    answers = asyncio.run(_traffic_while_killing(deployment.url, sets, victim))
    assert {a.status_code for a in answers} <= {200, 503}
    assert sum(a.status_code == 200 for a in answers) >= len(answers) // 2
    for adapter, answer in zip(sets, answers, strict=True):
        if answer.status_code == 200:
            assert normalised(answer.json()) == normalised(solo[adapter]), adapter
        else:
            assert answer.json()["error"]["code"] == "overloaded" and answer.headers["retry-after"]
    wait_for(lambda: deployment.running_replicas() == 2 and victim not in deployment.replica_actor_names(),
             180, "the killed replica's replacement")
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        assert emotion(client, extra[0]).status_code == 200


def test_redeploying_to_one_replica_under_traffic_loses_no_request(stack) -> None:
    """Scale-down and rolling update: ``serve.run`` with one replica replaces both replicas (a new
    build) while clients keep sending; Ray stops routing to each old replica, waits for its requests,
    and its lifespan drains the batching queue: every request is answered 200."""
    import threading

    from ray import serve

    from server.ray_app import build_app
    from tests.ray.support import APP_NAME

    deployment, _, extra, _ = stack
    args = {**deployment.args, "ray_min_replicas": 1, "ray_max_replicas": 1}
    redeployed = threading.Event()

    def redeploy() -> None:
        serve.run(build_app(args), name=APP_NAME, route_prefix="/")
        redeployed.set()

    async def traffic() -> list[int]:
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=deployment.url, timeout=120) as client:
            async def client_loop(offset: int) -> None:
                index = offset
                while not redeployed.is_set() or index < offset + 8:
                    response = await client.post("/emotion", files={"file": ("c.wav", CLIP)},
                                                 data={"adapter": extra[index % EXTRA_SETS]})
                    statuses.append(response.status_code)
                    index += 1

            await asyncio.wait_for(asyncio.gather(*(client_loop(i) for i in range(3))), 300)
        return statuses

    thread = threading.Thread(target=redeploy, daemon=True)
    thread.start()
    statuses = asyncio.run(traffic())
    thread.join(timeout=60)
    assert redeployed.is_set() and deployment.running_replicas() == 1
    assert statuses and set(statuses) == {200}, statuses


def test_a_live_stream_through_the_ingress_is_answered_by_the_replicas(stack, spoken_clip) -> None:
    """The ingress cuts the stream, a replica answers each utterance as the POST of its audio."""
    import io
    import json

    import numpy as np
    import soundfile as sf
    from websockets.sync.client import connect

    from tests.server.test_streaming import in_stream_time

    deployment, _, extra, _ = stack
    rng = np.random.default_rng(9)
    quiet = [(rng.standard_normal(int(s * 16000)) * 1e-3).astype(np.float32) for s in (0.5, 1.0, 0.8)]
    audio = np.concatenate([quiet[0], spoken_clip("switch on the kettle"), quiet[1], spoken_clip("how late is it"),
                            quiet[2]]).astype(np.float32)
    url = deployment.url.replace("http://", "ws://")
    for route, adapter in (("asr", None), ("emotion", extra[0])):
        query = f"?adapter={adapter}" if adapter else ""
        with connect(f"{url}/{route}/stream{query}") as ws:
            ready = json.loads(ws.recv(timeout=60))
            assert ready["type"] == "ready", ready
            for at in range(0, len(audio), 1600):
                ws.send(np.clip(np.round(audio[at:at + 1600] * 32768), -32768, 32767).astype("<i2").tobytes())
            ws.send(json.dumps({"type": "end"}))
            messages = [json.loads(ws.recv(timeout=120))]
            while messages[-1]["type"] not in ("end", "error"):
                messages.append(json.loads(ws.recv(timeout=120)))
        results = [m for m in messages if m["type"] == "result"]
        assert len(results) == 2 and messages[-1]["type"] == "end", messages
        heard = np.round(audio * 32768).clip(-32768, 32767) / 32768
        for result in results:
            assert result["adapter"] == ready["adapter"]
            start, stop = round(result["start_s"] * 16000), round(result["end_s"] * 16000)
            clip = io.BytesIO()
            sf.write(clip, heard[start:stop].astype(np.float32), 16000, subtype="FLOAT", format="WAV")
            posted = httpx.post(f"{deployment.url}/{route}", files={"file": ("u.wav", clip.getvalue())},
                                data={"adapter": adapter} if adapter else {}, timeout=120).json()
            if "words" in posted:  # a stream's word times count from its start
                posted["words"] = in_stream_time(posted["words"], result["start_s"])
            shared = (set(posted) & set(result)) - {"timings_ms"}
            assert shared >= {"adapter"} | ({"text"} if route == "asr" else {"label", "scores"})
            assert normalised({k: result[k] for k in shared}) == normalised({k: posted[k] for k in shared}), route
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    with pytest.raises((ConnectionClosed, InvalidStatus)), connect(f"{url}/verify/stream") as ws:  # two clips: none
        ws.recv(timeout=30)

    def ingress_finals() -> float | None:  # the ingress' stream series reach the one scrape target too
        from server.ray_metrics import sample_value

        text = httpx.get(f"{deployment.url}/metrics", timeout=30).text
        return sample_value(text, "elp_stream_utterances_total", {"endpoint": "asr", "kind": "final"})

    assert wait_for(ingress_finals, 30, "the ingress' stream metrics on the board") == 2


def test_a_live_stream_outlives_the_replica_that_answered_it(stack, spoken_clip) -> None:
    """The ingress holds a stream's session and sends each utterance to a replica. The replica that answered the
    first utterance is killed (after the redeploy above it is the only one); the stream stays open (quiet audio keeps
    it from idling) while the controller starts a replacement, whose answer to the next utterance is the one a POST
    of that utterance gets, and the stream ends normally."""
    import io
    import json

    import numpy as np
    import ray
    import soundfile as sf
    from websockets.sync.client import connect

    deployment, _, extra, _ = stack
    rng = np.random.default_rng(11)
    sent: list[np.ndarray] = []

    def send(ws, audio: np.ndarray) -> None:
        for at in range(0, len(audio), 1600):
            ws.send(np.clip(np.round(audio[at:at + 1600] * 32768), -32768, 32767).astype("<i2").tobytes())
        sent.append(audio)

    def quiet(seconds: float) -> np.ndarray:
        return (rng.standard_normal(int(seconds * 16000)) * 1e-3).astype(np.float32)

    (victim,) = deployment.replica_actor_names()
    with connect(f"{deployment.url.replace('http://', 'ws://')}/emotion/stream?adapter={extra[0]}") as ws:
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready", ready
        send(ws, np.concatenate([quiet(0.5), spoken_clip("switch on the kettle"), quiet(1.0)]))
        messages = [json.loads(ws.recv(timeout=120))]
        assert messages[0]["type"] == "result", messages
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 180
        while not (victim not in deployment.replica_actor_names() and deployment.running_replicas() == 1):
            assert time.monotonic() < deadline, "no replacement replica within 180 s"
            send(ws, quiet(0.2))  # the stream must not idle out while the controller replaces the replica
            time.sleep(1.0)
        send(ws, np.concatenate([spoken_clip("how late is it"), quiet(1.0)]))
        ws.send(json.dumps({"type": "end"}))
        messages.append(json.loads(ws.recv(timeout=120)))
        while messages[-1]["type"] not in ("end", "error"):
            messages.append(json.loads(ws.recv(timeout=120)))
    results = [m for m in messages if m["type"] == "result"]
    assert len(results) == 2 and messages[-1]["type"] == "end", messages
    heard = np.round(np.concatenate(sent) * 32768).clip(-32768, 32767) / 32768
    start, stop = round(results[1]["start_s"] * 16000), round(results[1]["end_s"] * 16000)
    clip = io.BytesIO()
    sf.write(clip, heard[start:stop].astype(np.float32), 16000, subtype="FLOAT", format="WAV")
    posted = httpx.post(f"{deployment.url}/emotion", files={"file": ("u.wav", clip.getvalue())},
                        data={"adapter": extra[0]}, timeout=120).json()
    assert results[1]["adapter"] == ready["adapter"] == posted["adapter"]
    assert normalised({k: results[1][k] for k in ("label", "scores")}) == normalised(
        {k: posted[k] for k in ("label", "scores")})
