"""Live streams against a real uvicorn process: the server's WebSocket protocol behind its own HTTP protocol,
uvicorn's message limit, and the Python client and CLI that stream a file."""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf

from clients import AdapterNotFoundError, ELPClient
from clients.cli import main as cli_main
from clients.streaming import stream_url
from tests.server.helpers import free_port, server_process

pytestmark = pytest.mark.slow
RATE = 16000
SENTENCES = ("switch off the radio please", "how warm is it in the bedroom")


@pytest.fixture(scope="module")
def recording(spoken_clip, tmp_path_factory) -> bytes:
    """Two sentences with pauses, as a 22.05 kHz stereo WAV file (the client mixes and resamples it)."""
    rng = np.random.default_rng(5)
    quiet = [(rng.standard_normal(int(s * RATE)) * 1e-3).astype(np.float32) for s in (0.5, 1.2, 0.8)]
    audio = np.concatenate([quiet[0], spoken_clip(SENTENCES[0]), quiet[1], spoken_clip(SENTENCES[1]), quiet[2]])
    from scipy.signal import resample_poly

    resampled = resample_poly(audio, 441, 320)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([resampled, resampled * 0.8], axis=1), 22050, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server_url(tiny_store, tmp_path_factory) -> Iterator[str]:
    backbone, store = tiny_store
    port = free_port()
    args = ["python", "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store),
            "--speakers-dir", str(tmp_path_factory.mktemp("speakers")), "--port", str(port),
            "--stream-max-frame-bytes", "16384",
            "--header-timeout-s", "1"]  # a stream outlives the head's deadline many times: the upgrade disarms it
    with server_process(args, port=port):
        yield f"http://127.0.0.1:{port}"


def test_the_client_streams_a_file_and_gets_one_result_per_utterance(server_url, recording) -> None:
    with ELPClient(server_url) as client:
        messages = list(client.stream("asr", recording))
        kinds = [m["type"] for m in messages]
        assert kinds[0] == "ready" and kinds[-1] == "end" and "partial" in kinds
        results = [m for m in messages if m["type"] == "result"]
        assert [r["utterance"] for r in results] == [0, 1]
        assert all(isinstance(r["text"], str) and r["end_s"] > r["start_s"] for r in results)
        emotion = list(client.stream("emotion", recording, partials=True))  # the task has none to give
        assert "partial" not in [m["type"] for m in emotion]
        assert {r["label"] for r in emotion if r["type"] == "result"} <= {"neutral", "happy", "sad", "angry"}
        with pytest.raises(AdapterNotFoundError):  # the server's error message, raised as the client's error
            list(client.stream("asr", recording, adapter="../etc"))


def test_uvicorn_refuses_an_oversized_message_before_the_app_reads_it(server_url) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(stream_url(server_url, "asr")) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(b"\x00" * 20000)
        with pytest.raises(ConnectionClosed) as closed:  # no error message from the app: uvicorn closed it
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_the_cli_prints_json_lines(server_url, recording, tmp_path, capsys) -> None:
    path = tmp_path / "talk.wav"
    path.write_bytes(recording)
    assert cli_main(["--url", server_url, "asr", str(path), "--stream"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    end = lines[-1]
    assert lines[0]["type"] == "ready" and end == {"type": "end", "utterances": 2, "audio_s": end["audio_s"]}
    assert 4.0 < end["audio_s"] < 10.0


def test_stream_urls() -> None:
    assert stream_url("https://host/base/", "asr", adapter="a", partials=False) == \
        "wss://host/base/asr/stream?adapter=a&partials=false"
    assert stream_url("http://127.0.0.1:8000", "intent") == "ws://127.0.0.1:8000/intent/stream"


def test_a_server_shutting_down_closes_its_open_streams(tiny_store, tmp_path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    backbone, store = tiny_store
    port = free_port()
    args = ["python", "-m", "server", "--backbone", str(backbone), "--adapters-dir", str(store),
            "--speakers-dir", str(tmp_path / "speakers"), "--port", str(port)]
    with server_process(args, port=port) as process, connect(stream_url(f"http://127.0.0.1:{port}", "asr")) as ws:
        assert json.loads(ws.recv())["type"] == "ready"
        ws.send(b"\x00\x00" * 1600)
        started = time.monotonic()
        process.terminate()  # SIGTERM: the stream must not hold the shutdown up until its 30 s idle timeout
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
        assert time.monotonic() - started < 15
    assert closed.value.rcvd is not None and closed.value.rcvd.code in (1001, 1012), closed.value


def test_the_async_client_streams_from_an_async_source_as_the_sync_one_does(server_url, recording) -> None:
    import asyncio

    from clients import AsyncELPClient
    from clients.streaming import read_mono_16k

    samples = read_mono_16k(recording)

    async def microphone():  # an async source of 16 kHz pieces, as a capture callback's queue would give
        for at in range(0, len(samples), 1600):
            yield samples[at:at + 1600]

    async def run() -> list[dict]:
        async with AsyncELPClient(server_url) as client:
            return [message async for message in client.stream("asr", microphone())]

    streamed = asyncio.run(run())
    with ELPClient(server_url) as client:
        expected = list(client.stream("asr", recording))
    results = [(m["start_s"], m["text"]) for m in streamed if m["type"] == "result"]
    assert len(results) == 2 and streamed[-1]["type"] == "end"
    assert results == [(m["start_s"], m["text"]) for m in expected if m["type"] == "result"]
