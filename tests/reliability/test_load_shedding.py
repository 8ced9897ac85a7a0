"""Load shed early, against real uvicorn processes: a burst past what the deadline allows gets 503 with
a Retry-After from the estimated wait at the door (not 504s after the deadline), a client that leaves
while queued has its work dropped unrun, and admin calls on unknown ids leave no state behind."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reliability.support import assert_error, live_server, multipart, wait_until
from tests.server.helpers import make_settings, running_app, wav_bytes

CLIP = wav_bytes(1.0, seed=91)
LONG_CLIP = wav_bytes(10.0, seed=92)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_a_burst_past_the_deadline_is_refused_at_the_door_with_retry_after(tiny_store, tmp_path) -> None:
    """24 concurrent 10 s clips, one row per batch, a 0.3 s deadline: most of the burst cannot be
    answered in time and hears so at once (503 + Retry-After), instead of a 504 after waiting."""
    backbone, store = tiny_store
    extra = ("--request-deadline-s", "0.3", "--max-batch-size", "1", "--max-wait-ms", "0")
    with live_server(backbone, store, tmp_path, *extra) as (port, _):
        url = f"http://127.0.0.1:{port}/emotion"
        assert httpx.post(url, files={"file": ("c.wav", LONG_CLIP)}, timeout=30).status_code == 200  # times a row

        def send(_: int) -> httpx.Response:
            return httpx.post(url, files={"file": ("c.wav", LONG_CLIP)}, timeout=60)

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(send, range(24)))
        codes = [answer.status_code for answer in answers]
        assert set(codes) <= {200, 503, 504}, codes
        refused = [answer for answer in answers if answer.status_code == 503]
        assert len(refused) >= 8 and codes.count(504) < len(refused), codes
        for answer in refused:
            error = assert_error(answer, 503, "overloaded")
            assert "estimated wait" in error["message"] and int(answer.headers["retry-after"]) >= 1, error
        assert codes.count(200) >= 1, codes
        started = time.monotonic()
        assert httpx.post(url, files=FILES, timeout=30).status_code == 200  # served right after
        assert time.monotonic() - started < 10


#: batches wait 2 s for company, so a request is still queued when its client hangs up
_PATIENT = ("--max-wait-ms", "2000", "--batch-wait", "always", "--max-batch-size", "64")


def _queue_then_hang_up(port: int, endpoint: str, filename: str, clip: bytes, jobs: int) -> None:
    """Send one upload on a raw socket, wait until its ``jobs`` are queued, close the connection, and wait
    until the server counts the request abandoned and its queue is empty."""
    body = multipart([("file", filename, clip, {"Content-Type": "audio/wav"})])
    head = (f"POST {endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=elpboundary\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
        assert wait_until(lambda: metric(port, "elp_queue_depth") == float(jobs), 10)
    assert wait_until(lambda: metric(port, "elp_abandoned_requests_total") == 1.0, 10)
    assert wait_until(lambda: metric(port, "elp_queue_depth") == 0.0, 10)


@pytest.mark.slow
def test_work_of_a_client_that_left_is_dropped_unrun(tiny_store, tmp_path) -> None:
    with live_server(*tiny_store, tmp_path, *_PATIENT) as (port, _):
        _queue_then_hang_up(port, "/emotion", "c.wav", CLIP, jobs=1)
        assert httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30).status_code == 200
        assert metric(port, 'elp_inference_rows_total{task="emotion"}') == 1.0  # only the client that stayed ran


@pytest.mark.slow
def test_every_segment_of_a_long_recording_whose_client_left_is_dropped_unrun(tiny_store, tmp_path) -> None:
    """A long /asr recording is one job per segment: a client that hangs up while they are queued has all of
    them dropped, none run."""
    import io

    import numpy as np
    import soundfile as sf

    from tests.elp.test_long_form import speech_with_pauses

    samples, pauses = speech_with_pauses(list(np.random.default_rng(5).uniform(2.0, 4.0, size=10)), seed=5)
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, subtype="PCM_16", format="WAV")
    with live_server(*tiny_store, tmp_path, *_PATIENT) as (port, _):
        _queue_then_hang_up(port, "/asr", "long.wav", buffer.getvalue(), jobs=len(pauses) + 1)  # a job a segment
        assert httpx.post(f"http://127.0.0.1:{port}/asr", files=FILES, timeout=30).status_code == 200
        assert metric(port, 'elp_inference_rows_total{task="asr"}') == 1.0  # none of the segments ran, the clip did


@pytest.mark.anyio
async def test_admin_calls_on_unknown_ids_leave_no_lock_behind(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        cache = app.state.service.cache
        for index in range(200):
            assert_error(await client.delete(f"/adapters/nobody-{index}/resident"), 404)
            assert_error(await client.post(f"/adapters/nobody-{index}/load"), 404)
        assert (await client.post("/adapters/emotion-alt/load")).status_code == 200
        assert (await client.delete("/adapters/emotion-alt/resident")).status_code == 200
        assert cache._locks == {}  # the per-id lock table only holds ids in use right now
        assert (await client.post("/emotion", files=FILES)).status_code == 200
