"""The decode pool: processes answer exactly as threads (samples, errors), a pool whose processes die is
rebuilt and the request still served, an upload that stops the decoder twice is refused, and a server
decoding in processes answers as one decoding in threads."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from server.audio import AudioLimits
from server.decoding import DecodePool
from server.errors import InvalidAudioError, PayloadTooLargeError
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
    for name, data in CLIPS.items():
        threads, processes = await pools["threads"].decode(data), await pools["processes"].decode(data)
        assert processes.waveform.dtype == np.float32 and processes.sample_rate == 16000, name
        np.testing.assert_array_equal(processes.waveform, threads.waveform)
        assert (processes.source_sample_rate, processes.source_channels) == (
            threads.source_sample_rate, threads.source_channels)


@pytest.mark.anyio
async def test_processes_raise_the_same_errors(pools) -> None:
    for data, error in ((b"not audio at all", InvalidAudioError), (wav_bytes(6.0), PayloadTooLargeError)):
        messages = []
        for kind in ("threads", "processes"):
            with pytest.raises(error) as raised:
                await pools[kind].decode(data, "reference")
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
    pool = DecodePool("processes", 1, 16000, LIMITS, decode=stop_the_process)
    try:
        for _ in range(2):
            with pytest.raises(InvalidAudioError, match="decoder stopped"):
                await pool.decode(CLIPS["wav"])
    finally:
        pool.shutdown()


@pytest.mark.anyio
async def test_a_server_decoding_in_processes_answers_as_one_in_threads(tiny_store, tmp_path) -> None:
    clip = wav_bytes(1.2, seed=9, sample_rate=22050)
    answers = {}
    for kind in ("threads", "processes"):
        settings = make_settings(*tiny_store, tmp_path / kind, decode_pool=kind)
        async with running_app(settings) as (_, client):
            response = await client.post("/emotion", files={"file": ("a.wav", clip, "audio/wav")})
            assert response.status_code == 200, response.text
            answers[kind] = response.json()["scores"]
            bad = await client.post("/emotion", files={"file": ("a.wav", b"garbage", "audio/wav")})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_audio"
    assert answers["processes"] == answers["threads"]
