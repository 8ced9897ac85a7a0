"""The server under load and faults, in-process (tiny real elp models): overload and timeouts answered with
their codes then serving again, a raising batch, a corrupt set, the adapter cache's single loads, byte bound,
pinned defaults and on-disk changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.server.helpers import (
    assert_error,
    assert_serving,
    clip_files,
    make_settings,
    metric,
    running_app,
    wait_until_ready,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tiny_store, tmp_path):
    backbone, store = tiny_store
    return make_settings(backbone, store, tmp_path, insecure_open_admin=True)


async def drained(worker, timeout_s: float = 30.0) -> None:
    """Until nothing is queued or running on the worker (its own estimate of the rows ahead is zero)."""
    deadline = time.monotonic() + timeout_s
    while worker.estimated_wait_s() > 0:
        assert time.monotonic() < deadline, "the worker did not drain"
        await asyncio.sleep(0.01)


def _slow_predict(app, seconds: float):
    """Slow down the model stage of every batch (the worker's ``head_outputs`` call)."""
    model = app.state.service.worker.model
    original = model.head_outputs

    def slow(waveforms, adapter_keys):
        time.sleep(seconds)
        return original(waveforms, adapter_keys)

    model.head_outputs = slow
    return lambda: setattr(model, "head_outputs", original)


async def burst_on_a_slow_model(app, client, requests: int, seconds: float) -> list:
    """``requests`` emotion requests at once while every batch's model stage takes ``seconds`` longer."""
    restore = _slow_predict(app, seconds)
    try:
        return await asyncio.gather(*(client.post("/emotion", files=clip_files()) for _ in range(requests)))
    finally:
        restore()


async def test_overloaded_with_retry_after_then_serving(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, max_queue=1, max_batch_size=1, max_wait_ms=0)
    async with running_app(settings) as (app, client):
        responses = await burst_on_a_slow_model(app, client, 6, 0.3)
        refused = [r for r in responses if r.status_code == 503]
        assert refused and any(r.status_code == 200 for r in responses)
        for response in refused:
            assert_error(response, 503, "overloaded")
            assert int(response.headers["Retry-After"]) >= 1
        await assert_serving(client)


async def test_timeout_when_waiting_past_the_deadline_then_serving(tiny_store, tmp_path) -> None:
    settings = make_settings(*tiny_store, tmp_path, request_deadline_s=0.2, max_batch_size=1, max_wait_ms=0)
    async with running_app(settings) as (app, client):
        responses = await burst_on_a_slow_model(app, client, 3, 0.5)
        assert sorted(r.status_code for r in responses)[0] == 200
        timed_out = [r for r in responses if r.status_code == 504]
        assert timed_out
        for response in timed_out:
            assert_error(response, 504, "timeout")
        # a timed-out request's batch may still be running the slow model: while it does, the admission rightly
        # estimates a wait past this deadline (503); "then serving" means once the worker has drained
        await drained(app.state.service.worker)
        await assert_serving(client)


async def test_a_raising_batch_gives_generic_500_and_the_worker_lives_on(settings) -> None:
    async with running_app(settings) as (app, client):
        model = app.state.service.worker.model
        original = model.head_outputs

        def explode(waveforms, adapter_keys):
            model.head_outputs = original
            raise RuntimeError("secret internal detail")

        model.head_outputs = explode
        error = assert_error(await client.post("/asr", files=clip_files()), 500, "internal")
        assert "secret" not in error["message"]
        assert app.state.service.worker.alive
        await assert_serving(client)
        assert metric(app, "elp_batch_failures_total") == 1


async def test_corrupt_set_fails_only_its_requests(tiny_store, store_copy, tmp_path) -> None:
    import shutil

    shutil.copytree(store_copy / "emotion-alt", store_copy / "emotion-broken")
    weights = store_copy / "emotion-broken" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        error = assert_error(await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-broken"}),
                             500, "internal")
        assert "emotion-broken" in error["message"] and "corrupt" in error["message"]
        await assert_serving(client)
        assert metric(app, "elp_adapter_load_failures_total") == 1
        listing = {r["id"]: r for r in (await client.get("/adapters")).json()}
        assert listing["emotion-broken"]["resident"] is False and listing["emotion-alt"]["error"] is None


# -- adapter cache --------------------------------------------------------------------------------


async def test_twenty_concurrent_first_requests_load_the_set_once(settings) -> None:
    async with running_app(settings) as (app, client):
        loads_before = metric(app, "elp_adapter_loads_total")
        responses = await asyncio.gather(*(
            client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"}) for _ in range(20)))
        assert all(r.status_code == 200 for r in responses)
        assert len({r.json()["adapter"] for r in responses}) == 1
        assert metric(app, "elp_adapter_loads_total") - loads_before == 1
        assert metric(app, "elp_adapter_cache_misses_total") == 4 + 1  # four defaults at startup, then one


async def test_lru_bounded_in_bytes_keeps_pinned_defaults(tiny_store, tmp_path) -> None:
    # nothing unpinned may stay
    settings = make_settings(*tiny_store, tmp_path, adapter_cache_bytes=1, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        answer = await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})
        assert answer.status_code == 200
        assert metric(app, "elp_adapter_evictions_total") == 1
        resident = {r["id"]: r["resident"] for r in (await client.get("/adapters")).json()}
        assert resident == {"asr-default": True, "verify-default": True, "emotion-default": True,
                            "intent-default": True, "emotion-alt": False}
        assert metric(app, "elp_resident_adapters") == 4


async def test_each_load_hands_the_freed_parse_buffers_back(tiny_store, tmp_path, monkeypatch) -> None:
    """A load frees the bytes read, an unload the set's tensors; the cache returns them to the OS after each (glibc's
    malloc_trim), which nothing else would."""
    import threading

    import server.adapters

    trims, trimmed = [], threading.Event()

    def trim() -> None:
        trims.append(1)
        trimmed.set()

    monkeypatch.setattr(server.adapters, "return_freed_memory", trim)
    settings = make_settings(*tiny_store, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        loads = app.state.service.cache.loads
        assert loads >= 4 and len(trims) == loads  # the defaults at start
        assert (await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})).status_code == 200
        assert len(trims) == loads + 1
        trimmed.clear()
        assert (await client.delete("/adapters/emotion-alt/resident")).status_code == 200
        assert await asyncio.to_thread(trimmed.wait, 30)  # and after the unloaded set's tensors are freed
        assert len(trims) == loads + 2


def test_returning_freed_memory_is_a_no_op_without_glibc(monkeypatch) -> None:
    import ctypes

    import server.memory

    def no_glibc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    server.memory._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    try:
        server.memory.return_freed_memory()  # nothing to call, nothing raised
        assert server.memory._malloc_trim() is None
    finally:
        server.memory._malloc_trim.cache_clear()


async def test_admin_unload_of_a_default_makes_it_unready_until_reloaded(settings) -> None:
    async with running_app(settings) as (_, client):
        assert (await client.delete("/adapters/emotion-default/resident")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        await assert_serving(client)  # loads it again on demand
        assert (await client.get("/readyz")).status_code == 200


async def test_set_changed_on_disk_is_served_under_its_new_hash(tiny_store, store_copy, tmp_path) -> None:
    from elp import load_backbone
    from elp.testing import make_random_adapter_set
    from tests.server.helpers import EMOTION_LABELS

    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    async with running_app(settings) as (_, client):
        before = (await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})).json()
        replacement = make_random_adapter_set(load_backbone(str(tiny_store[0])), "emotion", labels=EMOTION_LABELS,
                                              seed=42)
        replacement.save(store_copy / "emotion-alt")
        listing = {r["id"]: r for r in (await client.get("/adapters")).json()}
        after = (await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})).json()
        assert after["adapter"] != before["adapter"]
        assert after["adapter"] == f"emotion-alt@{listing['emotion-alt']['sha256'][:12]}"
        assert after["scores"] != before["scores"]
        # weights of another set under this config: rejected as a whole, never mixed; the resident
        # version keeps serving, and only a cold load of the mixed folder is an error
        other = store_copy / "emotion-default" / "adapter_model.safetensors"
        (store_copy / "emotion-alt" / "adapter_model.safetensors").write_bytes(other.read_bytes())
        kept = (await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})).json()
        assert kept["adapter"] == after["adapter"] and kept["scores"] == after["scores"]
        assert (await client.delete("/adapters/emotion-alt/resident")).status_code == 200
        mixed = await client.post("/emotion", files=clip_files(), data={"adapter": "emotion-alt"})
        assert_error(mixed, 500, "internal")
        await assert_serving(client)


# -- mixed batches ---------------------------------------------------------------------------------


async def test_not_ready_while_the_beam_search_compiles(tiny_store, tmp_path, monkeypatch) -> None:
    """A fresh install compiles the beam search for ~15 s after the defaults load; a first /asr would wait for it,
    so the server is not ready until it is done (a cached compile takes 0.1 s)."""
    import threading

    import server.service

    compiling, release = threading.Event(), threading.Event()

    def gated_compile() -> None:
        compiling.set()
        assert release.wait(30)

    monkeypatch.setattr(server.service, "warm_up_search", gated_compile)
    settings = make_settings(*tiny_store, tmp_path)
    async with running_app(settings, wait_ready=False) as (_, client):
        try:
            assert await asyncio.to_thread(compiling.wait, 30)
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert "compiling the beam search (numba; once per install, then cached)" in answer.json()["problems"]
        finally:
            release.set()
        await wait_until_ready(client)
