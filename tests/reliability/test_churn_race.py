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


@pytest.mark.anyio
async def test_unload_and_reload_while_a_request_holds_the_set_keeps_it_servable(tiny_store, tmp_path) -> None:
    backbone, store = tiny_store
    # a long batching wait keeps the first request queued (holding its lease) while the admin acts
    settings = make_settings(backbone, store, tmp_path, max_wait_ms=800.0, insecure_open_admin=True)
    async with running_app(settings) as (_, client):
        assert (await client.post("/adapters/emotion-alt/load")).status_code == 200
        in_flight = asyncio.ensure_future(client.post("/emotion", files=FILES, data={"adapter": "emotion-alt"}))
        await asyncio.sleep(0.2)
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
