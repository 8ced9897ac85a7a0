"""The decode pool: processes answer exactly as threads (samples, errors), a pool whose processes die is
rebuilt and the request still served, an upload that stops the decoder twice is refused, a server
decoding in processes answers as one decoding in threads, and a killed server leaves no pool process."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf

from elp.speech_activity import SpeechGate
from server.audio import AudioLimits
from server.decoding import DecodePool
from server.errors import InvalidAudioError, NoSpeechError, PayloadTooLargeError
from server.pool_processes import PARENT_POLL_S
from tests.server.helpers import make_settings, running_app, wav_bytes

LIMITS = AudioLimits(max_duration_s=5.0, min_duration_s=0.1, min_sample_rate=8000, max_sample_rate=48000)
CLIPS = {"wav": wav_bytes(1.3, seed=3), "stereo-44k": wav_bytes(0.9, seed=4, sample_rate=44100, channels=2),
         "flac-8k": wav_bytes(1.1, seed=5, sample_rate=8000, fmt="FLAC")}


@pytest.fixture(scope="module")
def pools():
    made = {kind: DecodePool(kind, 2, 16000, LIMITS) for kind in ("threads", "processes")}
    yield made
    for pool in made.values():
        pool.shutdown()


@pytest.mark.anyio
async def test_processes_decode_exactly_as_threads(pools) -> None:
    await asyncio.to_thread(lambda: [future.result() for future in pools["processes"]._warming])
    assert not pools["processes"].warming and not pools["threads"].warming
    for name, data in CLIPS.items():
        threads, processes = await pools["threads"].decode(data), await pools["processes"].decode(data)
        assert processes.waveform.dtype == np.float32 and processes.sample_rate == 16000, name
        np.testing.assert_array_equal(processes.waveform, threads.waveform)
        assert (processes.source_sample_rate, processes.source_channels) == (
            threads.source_sample_rate, threads.source_channels)


@pytest.mark.anyio
async def test_processes_raise_the_same_errors(pools) -> None:
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000, np.float32), 16000, format="WAV")
    cases = ((b"not audio at all", InvalidAudioError, None), (wav_bytes(6.0), PayloadTooLargeError, None),
             (silence.getvalue(), NoSpeechError, SpeechGate()))
    for data, error, gate in cases:
        messages = []
        for kind in ("threads", "processes"):
            with pytest.raises(error) as raised:
                await pools[kind].decode(data, "reference", gate)
            messages.append(raised.value.message)
        assert messages[0] == messages[1] and "'reference'" in messages[0]


@pytest.mark.anyio
async def test_a_pool_whose_processes_died_is_rebuilt_and_serves(pools) -> None:
    pool = pools["processes"]
    await pool.decode(CLIPS["wav"])
    before = list(pool._executors)
    for executor in before:  # what a decoder crash on a crafted file does
        for process in list(executor._processes.values()):
            os.kill(process.pid, signal.SIGKILL)
            process.join()
    decoded = [await pool.decode(CLIPS["wav"]) for _ in range(3)]
    assert all(clip.duration_s == pytest.approx(1.3, abs=1e-3) for clip in decoded)
    assert all(now is not then for now, then in zip(pool._executors, before, strict=True))


def stop_the_process(data: bytes, **_: object) -> None:
    """A decoder that dies on every upload, as libsndfile might on a crafted file."""
    os._exit(3)


@pytest.mark.anyio
async def test_an_upload_that_stops_the_decoder_twice_is_refused_and_the_pool_lives_on() -> None:
    restarts = []
    pool = DecodePool("processes", 1, 16000, LIMITS, decode=stop_the_process, on_restart=lambda: restarts.append(1))
    try:
        for _ in range(2):
            with pytest.raises(InvalidAudioError, match="decoder stopped"):
                await pool.decode(CLIPS["wav"])
    finally:
        pool.shutdown()
    assert len(restarts) == 4  # two uploads, each stopping a process and then its replacement


@pytest.mark.anyio
async def test_a_server_decoding_in_processes_answers_as_one_in_threads(tiny_store, tmp_path) -> None:
    """Also for a browser's WebM, which FFmpeg (PyAV) decodes: the processes isolate that parser too."""
    from tests.server.test_server_audio import _recorded

    clip = wav_bytes(1.2, seed=9, sample_rate=22050)
    webm, _ = _recorded("webm", "libopus", 48000, 1.2)
    answers = {}
    for kind in ("threads", "processes"):
        settings = make_settings(*tiny_store, tmp_path / kind, decode_pool=kind)
        async with running_app(settings) as (_, client):
            response = await client.post("/emotion", files={"file": ("a.wav", clip, "audio/wav")})
            assert response.status_code == 200, response.text
            recorded = await client.post("/emotion", files={"file": ("a.webm", webm, "audio/webm")})
            assert recorded.status_code == 200, recorded.text
            answers[kind] = (response.json()["scores"], recorded.json()["scores"])
            bad = await client.post("/emotion", files={"file": ("a.wav", b"garbage", "audio/wav")})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_audio"
    assert answers["processes"] == answers["threads"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_processes_end_when_the_server_is_killed() -> None:
    """A server killed outright (SIGKILL) leaves no decoding or post-processing process waiting forever."""
    script = "\n".join([
        "import os, signal",
        "from server.audio import AudioLimits",
        "from server.decoding import DecodePool",
        "from server.post_pool import PostPool",
        "decode = DecodePool('processes', 2, 16000, AudioLimits(5.0, 0.1, 8000, 48000))",
        "post = PostPool(1, 'processes')",
        "executors = decode._executors + [p._executor_locked() for p in post._processes]",
        "for executor in executors: executor.submit(os.getpid).result()",
        "print(' '.join(str(pid) for executor in executors for pid in executor._processes), flush=True)",
        "os.kill(os.getpid(), signal.SIGKILL)",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) == 3, result.stderr[-2000:]
    deadline = time.monotonic() + 20 * PARENT_POLL_S
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(PARENT_POLL_S / 5)
    assert not any(_alive(pid) for pid in pids)
