"""Robust under abuse, against a real uvicorn process: decoding with a budget, no non-finite answer,
enrolments that cannot hold the worker, slow headers and idle connections closed, 408/413 counted
under their endpoint, and a set rewritten on disk while it serves never giving a 500. Each check
ends with an ordinary request served."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.reliability.support import assert_error, encode, live_server, raw_request
from tests.server.helpers import EMOTION_LABELS, wav_bytes

CLIP = wav_bytes(1.0, seed=51)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}
HEADER_TIMEOUT_S = 0.5
KEEP_ALIVE_S = 1.0
ONE_SECOND = np.random.default_rng(3).uniform(-0.3, 0.3, 16000).astype(np.float32)


def save_set(backbone: Path, folder: Path, seed: int, *, nan: bool = False) -> None:
    import torch

    from elp import load_backbone
    from elp.testing import make_random_adapter_set

    adapter_set = make_random_adapter_set(load_backbone(str(backbone)), "emotion", labels=EMOTION_LABELS, seed=seed)
    if nan:
        with torch.no_grad():
            for parameter in adapter_set.parameters():
                parameter.fill_(float("nan"))
    adapter_set.save(folder)


pytestmark = [pytest.mark.slow, pytest.mark.integration]  # one real server process for the module (26 s)


@pytest.fixture(scope="module")
def served(tiny_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, psutil.Process, Path]]:
    """One server for the module: short header/keep-alive/upload timeouts, 1 MiB bodies, enrolments of
    at most 4 clips and 6 s, a set whose weights are NaN, and two versions of emotion-alt on the side."""
    backbone, store = tiny_store
    root = tmp_path_factory.mktemp("abuse")
    store_copy = root / "adapters"
    shutil.copytree(store, store_copy)
    save_set(backbone, store_copy / "emotion-nan", seed=9, nan=True)
    for seed in (61, 62):
        save_set(backbone, root / f"version-{seed}", seed=seed)
    extra = ("--header-timeout-s", str(HEADER_TIMEOUT_S), "--keep-alive-timeout-s", str(KEEP_ALIVE_S),
             "--upload-timeout-s", "1", "--max-upload-bytes", str(1024 * 1024), "--max-enrol-clips", "4",
             "--max-enrol-seconds", "6", "--insecure-open-admin")
    with live_server(backbone, store_copy, root, *extra) as (port, process):
        yield port, psutil.Process(process.pid), root


def client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)


def assert_serving(port: int) -> None:
    started = time.monotonic()
    assert httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30).status_code == 200
    assert time.monotonic() - started < 10


# -- decoding budget, finite answers ---------------------------------------------------------------------


def budget_cases() -> list[tuple[str, bytes, int, str]]:
    """Uploads of issue 18 that once cost GBs or seconds: (case, upload, status, message fragment)."""
    huge = ONE_SECOND.copy()
    huge[10] = 3e38
    return [
        ("100,000,007 Hz", encode(ONE_SECOND[:4000], 100_000_007), 400, "8000-192000 Hz"),
        ("1,000,003 Hz", encode(ONE_SECOND, 1_000_003), 400, "8000-192000 Hz"),
        ("FLAC 655,350 Hz x 8", encode(np.zeros((65535, 8), np.float32), 655350, fmt="FLAC"), 400, "sample rate"),
        ("FLAC 48 kHz x 8 x 29 s", encode(np.zeros((48000 * 29, 8), np.float32), 48000, fmt="FLAC"), 413,
         "decoding budget"),
        ("a sample at 3e38", encode(huge, 16000, subtype="FLOAT"), 400, "not audio"),
    ]


def test_decoding_is_budgeted_before_any_work(served) -> None:
    port, process, _ = served
    baseline = process.memory_info().rss
    with client(port) as http:
        for case, upload, status, fragment in budget_cases():
            for path in ("/emotion", "/intent"):
                started = time.monotonic()
                response = http.post(path, files={"file": ("c.wav", upload)})
                assert fragment in assert_error(response, status)["message"], case
                assert time.monotonic() - started < 5, case
            pair = http.post("/verify", files={"file": ("c.wav", upload), "reference": ("r.wav", CLIP)})
            assert_error(pair, status)  # /verify once answered a 500 (NaN score) here
            assert http.post("/emotion", files=FILES).status_code == 200
    assert process.memory_info().rss - baseline < 300 * 1024 * 1024


def test_a_non_finite_answer_is_never_sent(served) -> None:
    """A set whose weights are NaN: 422 non_finite_output, never a 200 with null scores, never a 500."""
    port, _, _ = served
    with client(port) as http:
        for _ in range(2):
            response = http.post("/emotion", files=FILES, data={"adapter": "emotion-nan"})
            assert "NaN" in assert_error(response, 422, "non_finite_output")["message"]
    assert_serving(port)


# -- enrolment --------------------------------------------------------------------------------------------


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_enrolment_is_capped_and_runs_as_ordinary_batches(served) -> None:
    port, _, _ = served
    clips = [("file", (f"{i}.wav", wav_bytes(1.4, seed=70 + i))) for i in range(5)]
    with client(port) as http:
        error = assert_error(http.post("/speakers/bob", files=clips), 413)
        assert "at most 4 clips" in error["message"]
        long_clips = [("file", (f"{i}.wav", wav_bytes(2.5, seed=80 + i))) for i in range(3)]
        assert "maximum is 6 s" in assert_error(http.post("/speakers/bob", files=long_clips), 413)["message"]

        before = http.get("/metrics").text
        assert http.post("/speakers/bob", files=clips[:4]).status_code == 200
        after = http.get("/metrics").text
        # four clips, four one-row batches: never one batch holding the worker for the whole enrolment
        assert _metric(after, "elp_batch_size_count") - _metric(before, "elp_batch_size_count") == 4
        one_row = 'elp_batch_size_bucket{le="1.0"}'
        assert _metric(after, one_row) - _metric(before, one_row) == 4

        # during an enrolment, other requests are served (their rows interleave with its clips)
        enrolling = threading.Thread(target=lambda: http.post("/speakers/carol", files=clips[:4]))
        enrolling.start()
        statuses = [http.post("/emotion", files=FILES).status_code for _ in range(4)]
        enrolling.join()
        assert statuses == [200] * 4
        assert {row["speaker"] for row in http.get("/speakers").json()} == {"bob", "carol"}


# -- connections --------------------------------------------------------------------------------------------


def read_until_closed(sock: socket.socket, within_s: float) -> tuple[bytes, float, bool]:
    """Everything the server sends until it closes the connection: (bytes, seconds, closed)."""
    started = time.monotonic()
    sock.settimeout(0.05)
    answer = b""
    while time.monotonic() - started < within_s:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return answer, time.monotonic() - started, True
        if not data:
            return answer, time.monotonic() - started, True
        answer += data
    return answer, time.monotonic() - started, False


def test_slow_headers_and_idle_connections_are_closed(served) -> None:
    port, _, _ = served
    # silent: connects and sends nothing
    with socket.create_connection(("127.0.0.1", port)) as silent:
        answer, elapsed, closed = read_until_closed(silent, 5)
    assert closed and answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer[:200]
    assert HEADER_TIMEOUT_S * 0.8 <= elapsed < HEADER_TIMEOUT_S + 3, elapsed

    # slowloris: a header line every 100 ms, never the blank line that ends the head
    holders = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /emotion HTTP/1.1\r\nHost: x\r\n")
        holders.append(sock)
    assert_serving(port)  # served while they hold their connections
    started, closed_at = time.monotonic(), {}
    while len(closed_at) < len(holders) and time.monotonic() - started < 5:
        for index, sock in enumerate(holders):
            if index in closed_at:
                continue
            try:
                sock.sendall(b"X-Trickle: 1\r\n")
            except OSError:
                closed_at[index] = time.monotonic() - started
        threading.Event().wait(0.1)  # the client's pace, not a synchronisation
    for sock in holders:
        sock.close()
    assert len(closed_at) == len(holders) and max(closed_at.values()) < HEADER_TIMEOUT_S + 3, closed_at

    # kept alive after an answer, then idle: closed after the keep-alive timeout
    with socket.create_connection(("127.0.0.1", port)) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, elapsed, closed = read_until_closed(idle, 6)
    assert answer.startswith(b"HTTP/1.1 200") and closed and KEEP_ALIVE_S * 0.8 <= elapsed < KEEP_ALIVE_S + 3

    # an oversized head: refused at once
    status, answer = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n")
    assert status == 431 and b"headers_too_large" in answer, answer[:300]
    assert_serving(port)


def test_408_and_413_are_counted_under_their_endpoint(served) -> None:
    port, _, _ = served
    head = (b"POST /emotion HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\n\r\n")
    status, _ = raw_request(port, head % (5 * 1024 * 1024), [b"x" * 100])
    assert status == 413
    status, _ = raw_request(port, head % 100_000, [b"x" * 100])  # then stalls: the 1 s upload timeout
    assert status == 408
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for code in ("408", "413"):
        assert _metric(text, "elp_requests_total", f'{{code="{code}",endpoint="emotion"}}') >= 1, code
        assert _metric(text, "elp_requests_total", f'{{code="{code}",endpoint="unmatched"}}') == 0, code
    assert_serving(port)


# -- adapter sets replaced on disk ---------------------------------------------------------------------------


def test_a_set_rewritten_on_disk_while_serving_never_gives_a_500(served) -> None:
    """A writer replaces emotion-alt file by file (in place, half a file at a time, and by rename),
    stopping after each step until a request has been answered (events, not sleeps)."""
    port, _, root = served
    folder = root / "adapters" / "emotion-alt"
    versions = [root / "version-61", root / "version-62"]
    step_done, request_done, finished = threading.Event(), threading.Event(), threading.Event()
    names = ["adapter_model.safetensors", "adapter_config.json"]

    def steps() -> Iterator[None]:
        for round_ in range(6):
            source = versions[round_ % 2]
            for name in names:
                data = (source / name).read_bytes()
                if round_ % 3 == 2:  # by rename: never a partial file, but the two files change apart
                    (folder / f".{name}.tmp").write_bytes(data)
                    (folder / f".{name}.tmp").replace(folder / name)
                    yield
                    continue
                with open(folder / name, "r+b") as handle:  # in place: a half-written file is visible
                    handle.truncate(0)
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    yield
                    handle.write(data[len(data) // 2 :])
                yield

    def writer() -> None:
        for _ in steps():
            step_done.set()
            request_done.wait(30)
            request_done.clear()
        finished.set()
        step_done.set()

    statuses: list[int] = []
    with client(port) as http:
        assert http.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}).status_code == 200
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        while True:
            assert step_done.wait(30)
            step_done.clear()
            if finished.is_set():
                break
            response = http.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})
            statuses.append(response.status_code)
            request_done.set()
        thread.join(30)
        assert len(statuses) == 20 and set(statuses) == {200}, statuses  # 4 rounds x 4 steps, 2 x 2 renames
        listing = {row["id"]: row for row in http.get("/adapters").json()}
        final = http.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}).json()
        assert final["adapter"] == f"emotion-alt@{listing['emotion-alt']['sha256'][:12]}"
    assert_serving(port)
