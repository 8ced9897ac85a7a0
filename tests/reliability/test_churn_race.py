"""Adapter unload + reload while a request still holds the set. This once broke the set: the stale
version and the reloaded one shared the model key ``<id>@<sha[:16]>``, so releasing the last lease on
the stale version unregistered the key the reloaded version used (500 until the next unload). Keys
now carry a per-load serial."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.soak import run_soak, soak_store
from tests.server.helpers import make_settings, running_app, wav_bytes

CLIP = wav_bytes(1.0, seed=5)
FILES = {"file": ("clip.wav", CLIP, "audio/wav")}


def queued_event(app) -> asyncio.Event:
    """Set once the next job reaches the batching queue (its request has leased its adapter)."""
    worker, event = app.state.service.worker, asyncio.Event()
    loop, submit = asyncio.get_running_loop(), app.state.service.worker.submit

    def submit_and_signal(*args, **kwargs):
        future = submit(*args, **kwargs)
        loop.call_soon_threadsafe(event.set)
        return future

    worker.submit = submit_and_signal
    return event


@pytest.mark.anyio
async def test_unload_and_reload_while_a_request_holds_the_set_keeps_it_servable(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    # a long batching wait keeps the first request queued (holding its lease) while the admin acts
    settings = make_settings(backbone, store, tmp_path, max_wait_ms=800.0, insecure_open_admin=True)
    async with running_app(settings) as (app, client):
        assert (await client.post("/adapters/emotion-alt/load")).status_code == 200
        queued = queued_event(app)
        in_flight = asyncio.ensure_future(client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}))
        await asyncio.wait_for(queued.wait(), 30)  # the request holds its lease, its job is in the queue
        assert (await client.delete("/adapters/emotion-alt/resident")).status_code == 200
        assert (await client.post("/adapters/emotion-alt/load")).status_code == 200
        assert (await in_flight).status_code == 200
        after = await client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"})
        assert after.status_code == 200, after.text


@pytest.mark.slow
def test_soak_with_churn_on_sets_that_traffic_uses(tiny_store, tmp_path) -> None:
    backbone, _ = tiny_store
    report = run_soak(backbone, soak_store(backbone, tmp_path / "store"), 20, concurrency=4,
                      traffic_uses_churned_sets=True)
    assert not report.unexpected, report.summary()
