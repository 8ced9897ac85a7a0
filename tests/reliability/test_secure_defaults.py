"""Secure by default, against real uvicorn processes: voiceprints and admin behind the key (403 that
says how to set one when none is set), no cross-site state changes, a rate-limited and rounded
speaker verification, no start on a reachable address without a key, and the task routes of the
README's quick start still open on loopback."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.reliability.support import assert_error, assert_error_shape, live_server, server_args
from tests.server.helpers import REPO_ROOT, free_port, wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # every test starts real server processes (153 s)

CLIP = wav_bytes(1.0, seed=41)
OTHER = wav_bytes(1.2, seed=42)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}
KEY = "s3cret-key"

#: every route behind the key: (method, path, request kwargs)
KEY_ROUTES = [
    ("POST", "/adapters/emotion-alt/load", {}),
    ("DELETE", "/adapters/emotion-default/resident", {}),
    ("POST", "/speakers/alice", {"files": FILES}),
    ("GET", "/speakers", {}),
    ("DELETE", "/speakers/alice", {}),
    ("POST", "/verify", {"files": FILES, "data": {"speaker": "alice"}}),
]


def assert_task_routes_open(client: httpx.Client) -> None:
    """The README's quick start: the task routes answer without a key."""
    for path in ("/asr", "/emotion", "/intent"):
        assert client.post(path, files=FILES).status_code == 200, path
    pair = client.post("/verify", files={**FILES, "reference": ("r.wav", OTHER)})
    assert pair.status_code == 200 and -1 <= pair.json()["score"] <= 1


def test_without_a_key_the_key_routes_answer_403_saying_how_and_tasks_stay_open(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    with live_server(backbone, store, tmp_path) as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for method, path, extra in KEY_ROUTES:
            for headers in ({}, {"X-API-Key": "guess"}, {"Authorization": "Bearer guess"}):
                error = assert_error(client.request(method, path, headers=headers, **extra), 403, "forbidden")
                assert "ELP_API_KEY" in error["message"] and "X-API-Key" in error["message"], error
        assert client.get("/readyz").status_code == 200  # the default sets were not unloaded
        assert_task_routes_open(client)
        assert client.head("/healthz").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}


def test_with_a_key_voiceprints_are_guarded_rate_limited_and_rounded(tiny_store, tmp_path) -> None:
    """The attack of issue 18 (enrol over a speaker, then pass as them; list; delete) fails without the
    key; an empty X-API-Key cannot shadow a valid bearer token; guesses are rate-limited."""
    backbone, store = tiny_store
    extra = ("--api-key", KEY, "--verify-burst", "3", "--verify-rate-per-s", "0.01")
    with live_server(backbone, store, tmp_path, *extra) as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for method, path, kwargs in KEY_ROUTES:
            assert_error(client.request(method, path, **kwargs), 401, "unauthorized")
        keyed = {"X-API-Key": "", "Authorization": f"Bearer {KEY}"}  # empty header + valid bearer: accepted
        enrolled = client.post("/speakers/alice", files=[("file", ("a.wav", CLIP)), ("file", ("b.wav", OTHER))],
                               headers=keyed)
        assert enrolled.status_code == 200 and enrolled.json()["num_clips"] == 2, enrolled.text
        assert [row["speaker"] for row in client.get("/speakers", headers=keyed).json()] == ["alice"]

        answers = [client.post("/verify", files=FILES, data={"speaker": "alice"}, headers={"X-API-Key": KEY})
                   for _ in range(2)]  # the 401s above spent no tokens: the key is checked first
        for answer in answers:
            body = answer.json()
            assert answer.status_code == 200 and body["speaker"] == "alice", answer.text
            assert body["score"] == round(body["score"], 2) and isinstance(body["same_speaker"], bool)
        third = client.post("/verify", files=FILES, data={"speaker": "alice"}, headers={"X-API-Key": KEY})
        assert third.status_code == 200
        limited = client.post("/verify", files=FILES, data={"speaker": "alice"}, headers={"X-API-Key": KEY})
        error = assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1 and "retry in" in error["message"]
        assert_task_routes_open(client)  # ordinary requests are not limited

        # cross-site: a foreign Origin is refused even with the key; the server's own Origin passes
        foreign = client.delete("/speakers/alice", headers={"X-API-Key": KEY, "Origin": "https://evil.example"})
        assert "cross-site" in assert_error(foreign, 403, "forbidden")["message"]
        own = client.delete("/speakers/alice", headers={"X-API-Key": KEY, "Origin": f"http://127.0.0.1:{port}"})
        assert own.status_code == 200 and own.json()["deleted"] == 1


def test_the_development_switch_opens_the_key_routes_but_never_to_other_sites(tiny_store, tmp_path) -> None:
    """ELP_INSECURE_OPEN_ADMIN: no key needed, but a page on another site still cannot change state
    (a multipart POST is a "simple" request a browser sends cross-site without asking)."""
    backbone, store = tiny_store
    with live_server(backbone, store, tmp_path, "--insecure-open-admin") as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}"):
            refused = client.post("/speakers/mallory", files=FILES, headers={"Origin": origin})
            assert_error(refused, 403, "forbidden")
            assert_error(client.delete("/adapters/emotion-default/resident", headers={"Origin": origin}), 403)
        assert client.get("/readyz").status_code == 200
        assert client.post("/speakers/mallory", files=FILES).status_code == 200  # curl: no Origin
        assert client.post("/speakers/mallory", files=FILES,
                           headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200
        assert client.get("/speakers").json()[0]["speaker"] == "mallory"
        assert_task_routes_open(client)


def test_a_reachable_bind_without_a_key_is_refused_in_one_log_line(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    args = server_args(backbone, store, tmp_path, free_port(), "--host", "0.0.0.0")
    command = [sys.executable, *args[1:]]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "ELP_API_KEY" in lines[0] and "0.0.0.0" in lines[0], lines


@pytest.mark.parametrize("flag", [("--api-key", KEY), ("--allow-unauthenticated-bind",)])
def test_a_reachable_bind_starts_with_a_key_or_the_explicit_switch(tiny_store, tmp_path, flag) -> None:
    backbone, store = tiny_store
    with live_server(backbone, store, tmp_path, "--host", "0.0.0.0", *flag) as (port, _):
        response = httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30)
        assert response.status_code == 200
        unauthorised = httpx.get(f"http://127.0.0.1:{port}/speakers", timeout=30)
        assert unauthorised.status_code in (401, 403)
        assert_error_shape(unauthorised)
