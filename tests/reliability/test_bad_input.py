"""Bad input: generated requests from the OpenAPI schema, and hostile audio. Every answer is the
contract's code in the contract's error shape: never a 500, never a hang, and the server answers a
normal request right after each one."""

from __future__ import annotations

import asyncio
import os

import httpx
import numpy as np
import pytest

from tests.reliability.support import (
    assert_error,
    assert_error_shape,
    encode,
    live_server,
    multipart,
    wav_claiming_data_bytes,
    zip_bytes,
)
from tests.server.helpers import make_settings, running_app, wav_bytes

CLIP = wav_bytes(1.0, seed=7)
ONE_SECOND = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)


def hostile_uploads() -> list[tuple[str, bytes, int | dict[str, int]]]:
    """(case, upload, expected status, or one per endpoint). 200 cases are legal but unusual: any
    channels, any rate."""
    nan = ONE_SECOND.copy()
    nan[100] = np.nan
    inf = ONE_SECOND.copy()
    inf[200] = np.inf
    # a real twenty-minute file: 8 kHz, 8-bit is 9.6 MB, under the upload limit, 40x the duration limit
    twenty_minutes = encode(np.zeros(1200 * 8000, dtype=np.float32), 8000, subtype="PCM_U8")
    huge = ONE_SECOND.copy()
    huge[300] = 3e38  # finite, but no audio: once gave /verify a NaN score (500) and /emotion null scores
    loud = ONE_SECOND * 1e5
    return [
        ("random bytes", np.random.default_rng(1).bytes(4096), 400),
        ("truncated wav header", CLIP[:20], 400),
        ("header only, no data", CLIP[:44], 400),
        ("zero-length upload", b"", 400),
        ("one sample", encode(ONE_SECOND[:1], 16000), 400),
        ("shorter than the minimum", encode(ONE_SECOND[:800], 16000), 400),
        ("NaN samples", encode(nan, 16000, subtype="FLOAT"), 400),
        ("infinite samples", encode(inf, 16000, subtype="FLOAT"), 400),
        ("zip renamed .wav", zip_bytes(), 400),
        ("text renamed .wav", b"hello, I am definitely a wav file\n" * 20, 400),
        ("8 channels", encode(np.tile(ONE_SECOND[:, None], (1, 8)), 16000), 200),
        ("a sample at 3e38", encode(huge, 16000, subtype="FLOAT"), 400),
        ("amplitude 3e4 (float)", encode(loud, 16000, subtype="FLOAT"), 400),
        ("8 kHz sample rate (lowest accepted)", encode(np.resize(ONE_SECOND, 8000), 8000), 200),
        ("odd rate 191,999 Hz (mapped cheaply)", encode(np.resize(ONE_SECOND, 191999), 191999), 200),
        ("192 kHz sample rate", encode(np.resize(ONE_SECOND, 192000), 192000), 200),
        ("1 kHz sample rate (below the range)", encode(ONE_SECOND[:1000], 1000), 400),
        ("100,000,007 Hz declared (once ~15 GiB)", encode(ONE_SECOND[:2000], 100_000_007), 400),
        ("1,000,003 Hz declared (once 3 s of CPU)", encode(ONE_SECOND, 1_000_003), 400),
        ("FLAC 655,350 Hz x 8 channels (once 735 MB)",
         encode(np.zeros((65535, 8), dtype=np.float32), 655350, fmt="FLAC"), 400),
        # /asr takes long recordings, with a larger but bounded budget (300 s x 96,000 samples)
        ("FLAC 48 kHz x 8 channels x 29 s: past a clip's decoding budget",
         encode(np.zeros((48000 * 29, 8), dtype=np.float32), 48000, fmt="FLAC"), {"/asr": 200, "/emotion": 413}),
        ("FLAC 48 kHz x 8 channels x 76 s: past the long-form decoding budget",
         encode(np.zeros((48000 * 76, 8), dtype=np.float32), 48000, fmt="FLAC"), 413),
        ("twenty minutes (real file, 8 kHz 8-bit)", twenty_minutes, 413),
        # a lying header is capped at the bytes really sent: 1 s is decoded, nothing of 4 GiB is allocated
        ("header claims 4 GiB of data", wav_claiming_data_bytes(CLIP, 0xFFFFFFF0), 200),
    ]


@pytest.mark.anyio
async def test_hostile_audio_gets_the_contract_code_and_the_server_keeps_serving(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    failures = []
    async with running_app(make_settings(backbone, store, tmp_path)) as (_, client):
        for case, upload, expected in hostile_uploads():
            for endpoint in ("/asr", "/emotion"):
                status = expected[endpoint] if isinstance(expected, dict) else expected
                try:
                    response = await asyncio.wait_for(
                        client.post(endpoint, files={"file": ("clip.wav", upload, "audio/wav")}), timeout=30)
                    if status == 200:
                        assert response.status_code == 200, response.text[:300]
                    else:
                        assert_error(response, status)
                    after = await asyncio.wait_for(client.post("/intent", files={"file": ("c.wav", CLIP)}), 30)
                    assert after.status_code == 200, after.text[:300]
                except (AssertionError, asyncio.TimeoutError) as exc:
                    failures.append(f"{case} on {endpoint}: {type(exc).__name__} {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.anyio
async def test_huge_and_odd_multipart_headers_are_refused_not_crashed(tiny_store, tmp_path) -> None:
    """Megabyte filenames, thousands of part headers, junk in the boundary: a 4xx, then service."""
    backbone, store = tiny_store
    many_headers = {f"X-Junk-{i}": "y" * 64 for i in range(2000)}
    bodies = {
        "1 MiB filename": multipart([("file", "a" * (1024 * 1024) + ".wav", CLIP, {})]),
        "2000 part headers": multipart([("file", "c.wav", CLIP, many_headers)]),
        "1 MiB part header value": multipart([("file", "c.wav", CLIP, {"X-Big": "z" * (1024 * 1024)})]),
        "10000 empty form fields": multipart([(f"f{i}", "", b"", {}) for i in range(10000)]
                                             + [("file", "c.wav", CLIP, {})]),
        "no closing boundary": multipart([("file", "c.wav", CLIP, {})])[:-20],
    }
    async with running_app(make_settings(backbone, store, tmp_path)) as (_, client):
        for name, body in bodies.items():
            response = await asyncio.wait_for(client.post(
                "/emotion", content=body, headers={"content-type": "multipart/form-data; boundary=elpboundary"}),
                timeout=60)
            assert response.status_code != 500, (name, response.text[:300])
            if response.status_code != 200:
                assert 400 <= response.status_code < 500, name
                assert_error_shape(response)
            after = await client.post("/emotion", files={"file": ("c.wav", CLIP)})
            assert after.status_code == 200, (name, after.text[:300])


@pytest.mark.slow
def test_schema_generated_requests_never_get_a_500(tiny_store, tmp_path) -> None:
    """schemathesis over /openapi.json (30 examples per operation) against a real server."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    backbone, store = tiny_store
    with live_server(backbone, store, tmp_path, "--api-key", "k3y") as (port, _):
        base = f"http://127.0.0.1:{port}"
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        problems: list[str] = []
        calls = [0]

        examples = int(os.environ.get("ELP_SCHEMA_EXAMPLES", "30"))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10, "the schema lost operations"
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=examples, deadline=10_000, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def check(case) -> None:
                response = case.call(base_url=base, timeout=30)
                calls[0] += 1
                label = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 500:
                    problems.append(f"{label}: {response.text[:200]}")
                elif response.status_code >= 400:
                    try:
                        assert_error_shape(httpx.Response(response.status_code, content=response.content))
                    except (AssertionError, ValueError) as exc:
                        problems.append(f"{label}: not the error shape: {exc}")

            check()
        assert calls[0] >= 5 * len(operations), calls
        assert httpx.post(f"{base}/emotion", files={"file": ("c.wav", CLIP)}, timeout=30).status_code == 200
    assert not problems, "\n".join(problems[:20])


@pytest.mark.slow  # a real server process, 100 uploads (25 s on 2 shared cores)
def test_random_bytes_fuzz_of_the_upload_never_crashes(tiny_store, tmp_path) -> None:
    """A hundred seeded mutations of a valid WAV (bit flips, cuts, header edits) over real HTTP."""
    backbone, store = tiny_store
    rng = np.random.default_rng(42)
    with live_server(backbone, store, tmp_path) as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(100):
            data = bytearray(CLIP)
            for position in rng.integers(0, 64, size=int(rng.integers(1, 6))):
                data[position] = int(rng.integers(0, 256))
            if rng.random() < 0.3:
                data = data[: int(rng.integers(0, len(data)))]
            response = client.post("/emotion", files={"file": ("c.wav", bytes(data))})
            assert response.status_code in (200, 400, 413), response.text[:300]
            if response.status_code != 200:
                assert_error_shape(response)
        assert client.post("/emotion", files={"file": ("c.wav", CLIP)}).status_code == 200
