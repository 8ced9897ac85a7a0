"""The Python client and the CLI against the real app: async in-process (ASGI) for every method and
typed error, sync client + CLI against a real uvicorn process."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from clients import (
    AdapterNotFoundError,
    AsyncELPClient,
    ELPClient,
    ForbiddenError,
    InvalidAudioError,
    InvalidRequestError,
    NoSpeechError,
    OverloadedError,
    RateLimitedError,
    SpeakerNotFoundError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from clients.cli import main as cli_main
from clients.errors import error_from_response
from tests.server.helpers import free_port, make_settings, running_app, server_process, wav_bytes

CLIP = wav_bytes(1.0, seed=7)


@pytest.mark.anyio
async def test_async_client_covers_every_endpoint(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key="k")
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://elp.test", api_key="k", transport=transport) as client:
            assert await client.health() and (await client.ready())["ready"]
            asr = await client.asr(CLIP)
            assert isinstance(asr.text, str) and asr.adapter.startswith("asr-default@")
            emotion = await client.emotion(CLIP, adapter="emotion-alt")
            assert emotion.label in emotion.scores and emotion.adapter.startswith("emotion-alt@")
            intent = await client.intent(CLIP)
            assert intent.slots is not None and intent.intent in intent.scores
            verify = await client.verify(CLIP, wav_bytes(1.0, seed=8))
            assert -1 <= verify.score <= 1 and verify.same_speaker == (verify.score >= verify.threshold)
            adapters = await client.adapters()
            assert {a.id for a in adapters} >= {"asr-default", "emotion-alt"}
            assert (await client.load_adapter("emotion-alt"))["resident"] is True
            assert (await client.unload_adapter("emotion-alt"))["resident"] is False
            speaker = await client.enroll_speaker("dave", [CLIP, wav_bytes(0.8, seed=9)])
            assert speaker.num_clips == 2
            assert [s.speaker for s in await client.speakers()] == ["dave"]
            assert (await client.verify(CLIP, speaker="dave")).speaker == "dave"
            assert await client.delete_speaker("dave") == 1
            assert "elp_requests_total" in await client.metrics()


@pytest.mark.anyio
async def test_async_client_raises_typed_errors(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, api_key="k")
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://elp.test", transport=transport) as client:
            with pytest.raises(InvalidAudioError) as info:
                await client.asr(b"not audio")
            assert info.value.status == 400 and info.value.code == "invalid_audio"
            with pytest.raises(AdapterNotFoundError):
                await client.asr(CLIP, adapter="emotion-alt")
            with pytest.raises(UnauthorizedError):
                await client.load_adapter("emotion-alt")
            with pytest.raises(UnauthorizedError):  # an enrolled voiceprint needs the key too
                await client.verify(CLIP, speaker="nobody")
        async with AsyncELPClient("http://elp.test", transport=transport, api_key="k") as keyed:
            with pytest.raises(SpeakerNotFoundError):
                await keyed.verify(CLIP, speaker="nobody")
        async with AsyncELPClient("http://elp.test", transport=transport) as client:
            with pytest.raises(InvalidRequestError):
                await client.verify(CLIP)
            assert (await client.emotion(CLIP)).label  # still serving


def test_error_mapping_keeps_retry_after() -> None:
    error = error_from_response(503, {"error": {"code": "overloaded", "message": "full"}},
                                httpx.Headers({"Retry-After": "3"}))
    assert isinstance(error, OverloadedError) and error.retry_after == 3.0 and error.status == 503
    limited = error_from_response(429, {"error": {"code": "rate_limited", "message": "slow down"}},
                                  httpx.Headers({"Retry-After": "2"}))
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 2.0
    assert isinstance(error_from_response(403, {"error": {"code": "forbidden", "message": "no key"}}, None),
                      ForbiddenError)
    silent = error_from_response(422, {"error": {"code": "no_speech", "message": "'file' is silent"}}, None)
    assert isinstance(silent, NoSpeechError) and isinstance(silent, InvalidRequestError)
    odd = error_from_response(415, "not json", httpx.Headers())
    assert not isinstance(odd, UnsupportedMediaTypeError) and odd.code == "invalid_request"


@pytest.mark.slow  # a real server process (30 s on 2 shared cores)
@pytest.mark.integration
def test_sync_client_and_cli_against_a_real_server(tiny_store, tmp_path, capsys) -> None:
    port = free_port()
    clip_a, clip_b = tmp_path / "a.wav", tmp_path / "b.wav"
    clip_a.write_bytes(CLIP)
    clip_b.write_bytes(wav_bytes(1.2, seed=11, sample_rate=22050, channels=2))
    args = ["python", "-m", "server", "--backbone", str(tiny_store[0]), "--adapters-dir", str(tiny_store[1]),
            "--speakers-dir", str(tmp_path / "speakers"), "--port", str(port), "--log-level", "warning"]
    with server_process(args, port=port):
        url = f"http://127.0.0.1:{port}"
        with ELPClient(url) as client:
            assert client.asr(clip_a).adapter.startswith("asr-default@")
            with open(clip_b, "rb") as handle:
                assert -1 <= client.verify(clip_a, handle).score <= 1
            assert client.emotion(clip_a).label and client.intent(clip_a).intent
            assert len(client.adapters()) == 5
            with pytest.raises(InvalidAudioError):
                client.emotion(b"junk")
        capsys.readouterr()
        assert cli_main(["--url", url, "asr", str(clip_a)]) == 0
        assert "text" in json.loads(capsys.readouterr().out)
        assert cli_main(["--url", url, "verify", str(clip_a), str(clip_b)]) == 0
        assert "score" in json.loads(capsys.readouterr().out)
        assert cli_main(["--url", url, "adapters"]) == 0
        assert len(json.loads(capsys.readouterr().out)) == 5
        assert cli_main(["--url", url, "emotion", str(clip_a), "--adapter", "nope"]) == 1
        assert json.loads(capsys.readouterr().err)["error"]["code"] == "adapter_not_found"


@pytest.mark.anyio
async def test_async_client_sees_overload(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_queue=1, max_batch_size=1, max_wait_ms=0)
    async with running_app(settings) as (app, _):
        model = app.state.service.worker.model
        original = model.head_outputs
        model.head_outputs = lambda w, k: (time.sleep(0.3), original(w, k))[1]
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://elp.test", transport=transport) as client:
            outcomes = await asyncio.gather(*(client.emotion(CLIP) for _ in range(5)), return_exceptions=True)
        model.head_outputs = original
        overloaded = [o for o in outcomes if isinstance(o, OverloadedError)]
        assert overloaded and all(o.retry_after and o.retry_after >= 1 for o in overloaded)


@pytest.mark.anyio
async def test_async_client_keeps_a_connection_per_request_in_flight() -> None:
    """Two rounds of 40 concurrent requests reuse the first round's 40 connections (httpx alone keeps
    20 alive, so the second round opened ~20 more, each a TCP handshake and close on both ends)."""
    accepted = 0
    release = asyncio.Event()
    waiting = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted, waiting
        accepted += 1
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed the connection
                break
            waiting += 1
            if waiting % 40 == 0:
                release.set()
            await release.wait()  # every request of a round is in flight before any is answered
            writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n'
                         b'{"status":"ok"}')
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AsyncELPClient(f"http://127.0.0.1:{port}") as client:
            for _ in range(2):
                release.clear()
                assert all(await asyncio.gather(*(client.health() for _ in range(40))))
    finally:
        server.close()
    assert accepted == 40
