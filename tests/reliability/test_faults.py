"""Faults: adapter sets changing on disk while resident or loading, a model that raises inside a
batch, clients that leave mid-request, SIGTERM with a full queue. Every request gets an answer or an
error (never a hang), and the server serves normally afterwards."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.reliability.support import (
    assert_error,
    assert_error_shape,
    live_server,
    multipart,
    raw_request,
    wait_until,
)
from tests.server.helpers import make_settings, running_app, wav_bytes

CLIP = wav_bytes(1.0, seed=11)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}


def random_set(backbone_dir: Path, folder: Path, seed: int) -> None:
    """Write a fresh random emotion set (another version of the same id) into ``folder``."""
    from elp import load_backbone
    from elp.testing import make_random_adapter_set
    from tests.server.helpers import EMOTION_LABELS

    make_random_adapter_set(load_backbone(str(backbone_dir)), "emotion", labels=EMOTION_LABELS,
                            seed=seed).save(folder)


async def serving(client: httpx.AsyncClient) -> None:
    response = await asyncio.wait_for(client.post("/emotion", files=FILES), timeout=30)
    assert response.status_code == 200, response.text


# -- adapter sets on disk -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_set_deleted_while_resident_is_not_found_then_back_when_restored(tiny_store, store_copy,
                                                                               tmp_path) -> None:
    backbone, _ = tiny_store
    saved = tmp_path / "saved"
    shutil.copytree(store_copy / "emotion-alt", saved)
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (_, client):
        assert (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).status_code == 200
        shutil.rmtree(store_copy / "emotion-alt")
        assert_error(await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}), 404)
        await serving(client)
        shutil.copytree(saved, store_copy / "emotion-alt")
        assert (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).status_code == 200


@pytest.mark.anyio
async def test_set_truncated_while_resident_keeps_the_resident_version_serving(tiny_store, store_copy,
                                                                              tmp_path) -> None:
    """A set half rewritten on disk (here: truncated weights) never gives a 500 while a good version
    is resident: that version keeps serving; a cold load of the broken set says which set is broken."""
    backbone, _ = tiny_store
    weights = store_copy / "emotion-alt" / "adapter_model.safetensors"
    original = weights.read_bytes()
    async with running_app(make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)) as (_, client):
        first = await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})
        assert first.status_code == 200
        weights.write_bytes(original[: len(original) // 2])
        kept = await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})
        assert kept.status_code == 200 and kept.json()["adapter"] == first.json()["adapter"], kept.text
        await serving(client)
        assert (await client.delete("/adapters/emotion-alt/resident")).status_code == 200
        error = assert_error(await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}), 500,
                             "internal")
        assert "emotion-alt" in error["message"]  # says which set, never a stack trace
        weights.write_bytes(original)
        assert (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).status_code == 200


@pytest.mark.anyio
async def test_set_replaced_while_resident_is_served_under_the_new_version(tiny_store, store_copy,
                                                                           tmp_path) -> None:
    backbone, _ = tiny_store
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (_, client):
        first = (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).json()["adapter"]
        random_set(backbone, store_copy / "emotion-alt", seed=77)
        second = (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).json()["adapter"]
        assert first.split("@")[0] == second.split("@")[0] == "emotion-alt"
        assert first != second


@pytest.mark.anyio
@pytest.mark.slow
async def test_set_changing_on_disk_during_cold_loads_never_hangs_or_500s_unexplained(
        tiny_store, store_copy, tmp_path) -> None:
    """Concurrent first requests while another thread deletes, truncates and rewrites the set."""
    backbone, _ = tiny_store
    folder = store_copy / "emotion-alt"
    saved = tmp_path / "saved"
    shutil.copytree(folder, saved)
    stop = threading.Event()

    def vandal() -> None:
        step = 0
        while not stop.is_set():
            mode = step % 3
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(saved, folder)
            if mode == 1:
                weights = folder / "adapter_model.safetensors"
                weights.write_bytes(weights.read_bytes()[:1000])
            elif mode == 2:
                shutil.rmtree(folder, ignore_errors=True)
            step += 1
            time.sleep(0.005)

    settings = make_settings(backbone, store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        thread = threading.Thread(target=vandal, daemon=True)
        thread.start()
        try:
            statuses: list[int] = []
            for _ in range(4):
                await client.delete("/adapters/emotion-alt/resident")  # cold again (404 when gone: fine)
                answers = await asyncio.wait_for(asyncio.gather(*(
                    client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}) for _ in range(10))),
                    timeout=60)
                for response in answers:
                    statuses.append(response.status_code)
                    assert response.status_code in (200, 404, 500), response.text
                    if response.status_code != 200:
                        assert_error_shape(response)
        finally:
            stop.set()
            thread.join()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(saved, folder)
        assert (await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})).status_code == 200
        await serving(client)
        assert app.state.service.worker.alive
    assert len(statuses) == 40


# -- the model worker -----------------------------------------------------------------------------


class FlakyModel:
    """Wraps the real model; every ``fail_every``-th batch raises inside its model stage."""

    def __init__(self, model: Any, fail_every: int) -> None:
        self._model = model
        self._fail_every = fail_every
        self.batches = 0

    def head_outputs(self, waveforms, adapter_keys):
        self.batches += 1
        if self.batches % self._fail_every == 0:
            raise RuntimeError("injected fault: CUDA error: an illegal memory access was encountered")
        return self._model.head_outputs(waveforms, adapter_keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.mark.anyio
async def test_model_raising_inside_batches_fails_only_those_requests(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    async with running_app(make_settings(backbone, store, tmp_path, max_wait_ms=2.0,
                                               max_batch_size=2)) as (app, client):
        worker = app.state.service.worker
        flaky = FlakyModel(worker.model, fail_every=3)
        worker.model = flaky
        endpoints = ["/asr", "/emotion", "/intent"] * 10
        answers = await asyncio.wait_for(asyncio.gather(*(client.post(e, files=FILES) for e in endpoints)), 120)
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 500}, codes
        assert codes.count(500) >= 1 and codes.count(200) >= 1, codes
        for answer in answers:
            if answer.status_code == 500:
                error = assert_error(answer, 500, "internal")
                assert "illegal memory" not in error["message"]  # the exception text stays in the log
        worker.model = flaky._model
        assert worker.alive
        assert (await client.get("/readyz")).status_code == 200
        await serving(client)


# -- real sockets: clients leaving, SIGTERM ---------------------------------------------------------


def _fds(pid: int) -> int:
    return psutil.Process(pid).num_fds()


@pytest.mark.slow
def test_clients_leaving_mid_upload_and_mid_inference_leak_nothing(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    body = multipart([("file", "c.wav", CLIP, {"Content-Type": "audio/wav"})])
    head = (b"POST /emotion HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=elpboundary\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode())
    with live_server(backbone, store, tmp_path, "--max-wait-ms", "300") as (port, process):
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/emotion", files=FILES, timeout=30).status_code == 200
        baseline = _fds(process.pid)
        import socket

        for round_ in range(20):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(head)
                if round_ % 2:
                    sock.sendall(body[: len(body) // 2])  # leaves mid-upload
                else:
                    sock.sendall(body)  # leaves while queued / running (max wait 300 ms)
                    time.sleep(0.05)
        # the server notices, drops the work, closes the sockets, and keeps answering
        assert httpx.post(f"{url}/emotion", files=FILES, timeout=30).status_code == 200
        settled = wait_until(lambda: _fds(process.pid) <= baseline + 2, 15, interval_s=0.1)
        assert settled, f"fds: {baseline} before, {_fds(process.pid)} after"
        metrics = httpx.get(f"{url}/metrics").text
        assert "elp_queue_depth 0.0" in metrics


def _all_queued_or_answered(port: int, futures: list) -> bool:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    depth = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("elp_queue_depth "))
    return depth >= 1 and depth + sum(f.done() for f in futures) == len(futures)


@pytest.mark.slow
def test_sigterm_with_a_full_queue_answers_or_refuses_every_request(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    # batches always wait 1.5 s for company: the queue is still full when SIGTERM arrives
    extra = ("--max-queue", "4", "--max-wait-ms", "1500", "--batch-wait", "always", "--max-batch-size", "64",
             "--shutdown-drain-s", "5")
    with live_server(backbone, store, tmp_path, *extra) as (port, process):
        url = f"http://127.0.0.1:{port}/emotion"

        def send(_: int) -> str:
            try:
                return str(httpx.post(url, files=FILES, timeout=45).status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__  # refused / reset once the socket closes: an error, not a hang

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(send, i) for i in range(16)]
            # every request is either queued or already refused (503), before the batch's 1.5 s wait ends
            assert wait_until(lambda: _all_queued_or_answered(port, futures), 30)
            process.send_signal(signal.SIGTERM)
            outcomes = [f.result(timeout=60) for f in futures]
        exited = process.wait(timeout=30)
    assert exited in (0, -signal.SIGTERM)
    assert outcomes.count("200") >= 1, outcomes  # the queued ones were drained
    assert outcomes.count("503") >= 8, outcomes  # the overflow was refused at once
    assert set(outcomes) <= {"200", "503", "ConnectError", "RemoteProtocolError", "ReadError"}, outcomes


@pytest.mark.slow
def test_a_stalled_upload_does_not_block_other_clients(tiny_store, tmp_path) -> None:
    """Slowloris: a client declares 5 MiB and sends 100 bytes; everyone else is served meanwhile."""
    backbone, store = tiny_store
    with live_server(backbone, store, tmp_path) as (port, _):
        head = (b"POST /emotion HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 5242880\r\n\r\n")
        sent = threading.Event()

        def stalling_body():
            yield b"x" * 100
            sent.set()  # the 100 bytes are out; the client now goes quiet

        stalled = threading.Thread(target=raw_request, args=(port, head, stalling_body()),
                                   kwargs={"read_timeout_s": 2}, daemon=True)
        stalled.start()
        assert sent.wait(10)
        started = time.monotonic()
        assert httpx.post(f"http://127.0.0.1:{port}/emotion", files=FILES, timeout=30).status_code == 200
        assert time.monotonic() - started < 5
        stalled.join(timeout=10)


def test_fault_tests_leave_no_server_processes() -> None:
    """Guard: every server started above was stopped (no orphaned uvicorn holding ports)."""
    me = psutil.Process()
    children = [c for c in me.children(recursive=True) if "server" in " ".join(c.cmdline())]
    assert not children, [c.cmdline() for c in children]
    assert subprocess  # imported for callers that shell out
