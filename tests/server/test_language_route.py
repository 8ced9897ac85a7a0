"""``POST /language`` and ``client.language`` exist because the task is registered: a tiny language set
added to a copy of the shared store answers over HTTP and through the typed client, and its row
shares the worker's batches with the other tasks."""

from __future__ import annotations

import httpx
import pytest

from clients import AsyncELPClient
from elp import load_backbone
from elp.testing import make_random_adapter_set
from tests.server.helpers import make_settings, running_app, wav_bytes

pytestmark = pytest.mark.anyio

LANGUAGES = ["de", "en", "es", "fr", "it", "ru"]
CLIP = wav_bytes(1.0, seed=11)


async def test_language_route_and_client_method(tiny_store, store_copy, tmp_path) -> None:
    backbone, _ = tiny_store
    make_random_adapter_set(load_backbone(str(backbone)), "language", method="l", labels=LANGUAGES,
                            seed=9).save(store_copy / "language-default")
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (app, client):
        response = await client.post("/language", files={"file": ("clip.wav", CLIP, "audio/wav")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] in LANGUAGES and set(body["scores"]) == set(LANGUAGES)
        assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert body["adapter"].startswith("language-default@")
        assert "/language" in (await client.get("/openapi.json")).json()["paths"]
        listing = {row["id"]: row for row in (await client.get("/adapters")).json()}
        assert listing["language-default"]["task"] == "language" and listing["language-default"]["default"]
        wrong = await client.post("/language", files={"file": ("clip.wav", CLIP, "audio/wav")},
                                  data={"adapter": "emotion-default"})
        assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "adapter_not_found"
        transport = httpx.ASGITransport(app=app)
        async with AsyncELPClient("http://elp.test", transport=transport) as typed:
            answer = await typed.language(CLIP)
            assert answer.label == body["label"] and answer.scores == pytest.approx(body["scores"], abs=1e-5)


async def test_language_whisper_is_the_default_where_the_store_has_it(tiny_store, store_copy, tmp_path) -> None:
    """The registry names ``language-whisper`` (made at setup) first and ``language-default`` (in git) after it:
    a store without the first answers with the second even beside another language set, which alone would
    leave the task without a default; once the setup's set is there, it answers."""
    backbone, _ = tiny_store
    whisper = load_backbone(str(backbone))
    for seed, name in ((9, "language-default"), (10, "language-alt")):
        make_random_adapter_set(whisper, "language", method="l", labels=LANGUAGES, seed=seed).save(store_copy / name)
    files = {"file": ("clip.wav", CLIP, "audio/wav")}
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (_, client):
        answer = await client.post("/language", files=files)
        assert answer.status_code == 200 and answer.json()["adapter"].startswith("language-default@"), answer.text
    make_random_adapter_set(whisper, "language", method="l", labels=LANGUAGES, seed=11).save(
        store_copy / "language-whisper")
    async with running_app(make_settings(backbone, store_copy, tmp_path)) as (app, client):
        service = app.state.service
        await service.warmed()  # ready without it: a decoder set many deployments never call loads on first use
        assert service.cache.resident("language-whisper") is None
        answer = await client.post("/language", files=files)
        assert answer.status_code == 200 and answer.json()["adapter"].startswith("language-whisper@"), answer.text
        assert service.cache.resident("language-whisper") is not None
        listing = {row["id"]: row for row in (await client.get("/adapters")).json()}
        assert listing["language-whisper"]["default"] and not listing["language-default"]["default"]
    faster = make_settings(backbone, store_copy, tmp_path, default_language_adapter="language-default")
    async with running_app(faster) as (_, client):  # a deployment that wants the faster set says so
        answer = await client.post("/language", files=files)
        assert answer.json()["adapter"].startswith("language-default@"), answer.text
