"""Security: adapter ids cannot reach outside the store (traversal, absolute paths, encodings,
symlinks), only safetensors are ever read (a planted pickle is never unpickled), admin calls need the
key, and upload / duration limits hold against clients that lie about their body."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.reliability.support import (
    assert_error,
    assert_error_shape,
    encode,
    live_server,
    multipart,
    raw_request,
    wav_claiming_data_bytes,
)
from tests.server.helpers import make_settings, running_app, wav_bytes

CLIP = wav_bytes(1.0, seed=21)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}

TRAVERSAL_IDS = [
    "../emotion-alt", "../../etc/passwd", "/etc/passwd", "emotion-alt/../emotion-default", "..", ".",
    "..%2Femotion-alt", "%2e%2e%2femotion-alt", "%2e%2e", "emotion-alt%00", "emotion-alt\x00.json",
    "~/.ssh", "C:\\Windows", "emotion-alt/", " emotion-alt", "outside",
]


class Tripwire:
    """Unpickling this touches a file: proof that someone called pickle.load on it."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def plant_pickles(folder: Path, sentinel: Path) -> None:
    payload = pickle.dumps({"weight": Tripwire(sentinel)})
    for name in ("adapter_model.bin", "pytorch_model.bin", "model.pkl", "adapter_model.pt"):
        (folder / name).write_bytes(payload)


def outside_set(store: Path, tmp_path: Path) -> Path:
    """A valid set folder outside the store (a copy of emotion-alt)."""
    outside = tmp_path / "outside-store" / "outside"
    shutil.copytree(store / "emotion-alt", outside)
    return outside


@pytest.mark.anyio
async def test_ids_cannot_traverse_out_of_the_store(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    outside_set(store_copy, tmp_path)
    async with running_app(make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)) as (_, client):
        for adapter_id in TRAVERSAL_IDS:
            response = await client.post("/emotion", files=FILES, data={"adapter": adapter_id})
            assert response.status_code in (404, 422), (adapter_id, response.text)
            assert_error_shape(response)
            encoded = httpx.URL(f"/adapters/{adapter_id.replace('/', '%2F').replace(chr(0), '%00')}/load")
            admin = await client.post(encoded)
            assert admin.status_code in (404, 422), (adapter_id, admin.text)
            assert_error_shape(admin)
        listed = {row["id"] for row in (await client.get("/adapters")).json()}
        assert listed == {"asr-default", "verify-default", "emotion-default", "intent-default", "emotion-alt"}
        assert (await client.post("/emotion", files=FILES)).status_code == 200


@pytest.mark.anyio
async def test_planted_pickles_are_never_opened(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    sentinel = tmp_path / "unpickled"
    plant_pickles(store_copy / "emotion-alt", sentinel)
    # a set with only pickled weights, and one whose safetensors file is really a pickle
    only_pickle = store_copy / "pickle-only"
    only_pickle.mkdir()
    shutil.copy(store_copy / "emotion-alt" / "adapter_config.json", only_pickle)
    plant_pickles(only_pickle, sentinel)
    disguised = store_copy / "pickle-disguised"
    shutil.copytree(store_copy / "emotion-alt", disguised)
    (disguised / "adapter_model.safetensors").write_bytes(pickle.dumps({"w": Tripwire(sentinel)}))
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (_, client):
        assert (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).status_code == 200
        for adapter_id in ("pickle-only", "pickle-disguised"):
            response = await client.post("/emotion", files=FILES, data={"adapter": adapter_id})
            assert response.status_code in (404, 500), response.text
            assert_error_shape(response)
        await client.get("/adapters")
        assert (await client.post("/emotion", files=FILES)).status_code == 200
    assert not sentinel.exists(), "a pickle planted in the adapter store was unpickled"


@pytest.mark.anyio
async def test_admin_endpoints_need_the_key(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    settings = make_settings(backbone, store_copy, tmp_path, api_key="s3cret-key")
    calls = [("POST", "/adapters/emotion-alt/load", {}), ("DELETE", "/adapters/emotion-alt/resident", {}),
             ("POST", "/speakers/mallory", {"files": FILES}), ("DELETE", "/speakers/mallory", {})]
    wrong = [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": ""},
             {"Authorization": "Basic czNjcmV0LWtleQ=="}, {"X-API-Key": "s3cret-key "}, {"x-api-key": "S3CRET-KEY"}]
    async with running_app(settings) as (_, client):
        for method, path, extra in calls:
            for headers in wrong:
                response = await client.request(method, path, headers=headers, **extra)
                assert_error(response, 401, "unauthorized")
        for index, (method, path, extra) in enumerate(calls):
            headers = {"X-API-Key": "s3cret-key"} if index % 2 else {"Authorization": "Bearer s3cret-key"}
            response = await client.request(method, path, headers=headers, **extra)
            assert response.status_code == 200, (path, response.text)
        # task endpoints stay open
        assert (await client.post("/emotion", files=FILES)).status_code == 200


@pytest.mark.slow
def test_limits_hold_against_clients_that_lie(tiny_store, tmp_path) -> None:
    """Raw sockets against a real uvicorn: the body limit (1 MiB here) and duration limit (5 s)."""
    backbone, store = tiny_store
    limit = 1024 * 1024
    extra = ("--max-upload-bytes", str(limit), "--max-duration-s", "5")
    content_type = b"Content-Type: multipart/form-data; boundary=elpboundary\r\n"
    with live_server(backbone, store, tmp_path, *extra) as (port, _):
        # 1. declares 100 GB: refused before a byte of body is read
        head = b"POST /emotion HTTP/1.1\r\nHost: x\r\n" + content_type + b"Content-Length: 100000000000\r\n\r\n"
        status, answer = raw_request(port, head, [b"x" * 1000])
        assert status == 413 and b"payload_too_large" in answer, answer[:300]

        # 2. no Content-Length at all, chunked, 8 MiB streamed: cut off at the limit
        head = b"POST /emotion HTTP/1.1\r\nHost: x\r\n" + content_type + b"Transfer-Encoding: chunked\r\n\r\n"
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        status, answer = raw_request(port, head, (chunk for _ in range(128)))
        assert status == 413 and b"payload_too_large" in answer, answer[:300]

        # 3. declares a small body, sends 3 MiB: only the declared bytes are read; a 4xx, never a 500
        small = multipart([("file", "c.wav", CLIP[:200], {})])
        head = (b"POST /emotion HTTP/1.1\r\nHost: x\r\n" + content_type
                + f"Content-Length: {len(small)}\r\nConnection: close\r\n\r\n".encode())
        status, answer = raw_request(port, head, [small, b"z" * (3 * limit)])
        assert status is not None and 400 <= status < 500, answer[:300]

        # 4. declares 40 s of audio in a 0.6 MiB file (8 kHz, 8-bit): the duration limit, not the size, refuses it
        forty_seconds = encode(np.zeros(8000 * 40, dtype=np.float32), 8000, subtype="PCM_U8")
        response = httpx.post(f"http://127.0.0.1:{port}/emotion", files={"file": ("c.wav", forty_seconds)})
        assert_error(response, 413, "payload_too_large")

        # 5. a header claiming "unknown length" (0xFFFFFFFF) over 40 s of real data: still the duration limit
        streamed = wav_claiming_data_bytes(forty_seconds, 0xFFFFFFFF)
        response = httpx.post(f"http://127.0.0.1:{port}/emotion", files={"file": ("c.wav", streamed)})
        assert_error(response, 413, "payload_too_large")

        # 6. a raw path with dot segments (no client normalisation) never reaches the store
        status, answer = raw_request(port, b"POST /adapters/../../etc/passwd/load HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert status in (404, 405), answer[:300]

        assert httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30).status_code == 200
