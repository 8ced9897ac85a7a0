"""Enrolled speakers in a real PostgreSQL (``ELP_SPEAKERS_URL``): the same contract as the folder
store, and two apps (two processes' worth of state) sharing it see each other's enrolments."""

from __future__ import annotations

import pytest

from tests.server.helpers import make_settings, running_app, wav_bytes
from tests.server.postgres import postgres_server

pytest.importorskip("psycopg")

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.integration]
KEY = "postgres-test-key"


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


async def test_enrolled_through_one_app_verifies_through_another(tiny_store, tmp_path, postgres_url) -> None:
    alice = [wav_bytes(1.0, seed=21), wav_bytes(1.3, seed=22)]
    first = make_settings(*tiny_store, tmp_path / "a", speakers_url=postgres_url, api_key=KEY)
    second = make_settings(*tiny_store, tmp_path / "b", speakers_url=postgres_url, api_key=KEY)
    async with running_app(first) as (_, one), running_app(second) as (_, other):
        one.headers["X-API-Key"] = other.headers["X-API-Key"] = KEY  # voiceprints are behind the key
        enrolled = await one.post("/speakers/alice", files=[("file", ("a1.wav", alice[0])),
                                                            ("file", ("a2.wav", alice[1]))])
        assert enrolled.status_code == 200, enrolled.text
        assert enrolled.json()["num_clips"] == 2 and enrolled.json()["adapter"].startswith("verify-default@")
        assert not (tmp_path / "a" / "speakers").exists()  # nothing went to the folder store
        assert [row["speaker"] for row in (await other.get("/speakers")).json()] == ["alice"]
        via_other = await other.post("/verify", files={"file": ("c.wav", alice[0])}, data={"speaker": "alice"})
        via_one = await one.post("/verify", files={"file": ("c.wav", alice[0])}, data={"speaker": "alice"})
        assert via_other.status_code == 200, via_other.text
        assert via_other.json()["score"] == via_one.json()["score"]  # rounded to 2 decimals on enrolled ids
        assert via_other.json()["score"] > 0.5  # an enrolment clip matches its own mean embedding
        unknown = await other.post("/verify", files={"file": ("c.wav", alice[0])}, data={"speaker": "bob"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "speaker_not_found"
        identified = await other.post("/identify", files={"file": ("c.wav", alice[0])})  # the gallery query
        assert identified.status_code == 200, identified.text
        assert identified.json()["candidates"] == [{"speaker": "alice", "score": via_one.json()["score"]}]
        assert identified.json()["enrolled_speakers"] == 1
        deleted = await other.delete("/speakers/alice")
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        gone = await one.delete("/speakers/alice")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "speaker_not_found"
        assert (await one.get("/speakers")).json() == []
