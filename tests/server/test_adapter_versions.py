"""A set's version (``id@sha`` in answers) follows its content only: editing the description, the
training record or the model card keeps it; changing the threshold makes a new one. Enrolments are
keyed by the embedding version (content without the threshold): a recalibration keeps them, a
changed head orphans them. Enrolments made under the earlier rules are still found while the set's
bytes are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elp.adapter_files import CARD_NAME, CONFIG_NAME, files_sha256
from server.adapter_store import AdapterStore
from tests.server.helpers import make_settings, running_app, wav_bytes

pytestmark = pytest.mark.anyio

ALICE = wav_bytes(1.0, seed=21)


def clip(data: bytes = ALICE) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("clip.wav", data, "audio/wav")}


def edit_config(folder: Path, **changes: object) -> None:
    path = folder / CONFIG_NAME
    path.write_text(json.dumps(json.loads(path.read_text()) | changes, indent=2))


async def test_provenance_edits_keep_the_version_and_enrolments(tiny_store, store_copy, tmp_path) -> None:
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    folder = store_copy / "verify-default"
    async with running_app(settings) as (_, client):
        await client.post("/speakers/alice", files=clip())
        label = (await client.post("/verify", files=clip(), data={"speaker": "alice"})).json()["adapter"]

        edit_config(folder, description="rewritten", metrics={"eer": 0.5}, training={"seed": 9})
        (folder / CARD_NAME).write_text("# verify-default\n\nA new model card.\n")
        answer = await client.post("/verify", files=clip(), data={"speaker": "alice"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["adapter"] == label and answer.json()["score"] == pytest.approx(1.0, abs=1e-4)
        listed = {row["id"]: row for row in (await client.get("/adapters")).json()}["verify-default"]
        assert label == f"verify-default@{listed['sha256'][:12]}" and listed["resident"]


async def test_a_recalibrated_threshold_keeps_enrolments_a_changed_head_does_not(tiny_store, store_copy,
                                                                               tmp_path) -> None:
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    folder = store_copy / "verify-default"
    async with running_app(settings) as (_, client):
        enrolment = (await client.post("/speakers/alice", files=clip())).json()["adapter"]
        first = (await client.post("/verify", files=clip(), data={"speaker": "alice"})).json()["adapter"]

        edit_config(folder, threshold=0.5)
        answer = await client.post("/verify", files=clip(), data={"speaker": "alice"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["adapter"] != first and answer.json()["threshold"] == 0.5
        assert answer.json()["score"] == pytest.approx(1.0, abs=1e-4)
        assert (await client.post("/speakers/alice", files=clip())).json()["adapter"] == enrolment

        head = json.loads((folder / CONFIG_NAME).read_text())["head"]
        edit_config(folder, head=head | {"pitch_angle": head["pitch_angle"] + 0.25})
        answer = await client.post("/verify", files=clip(), data={"speaker": "alice"})
        assert answer.status_code == 404 and "older version" in answer.json()["error"]["message"]
        relabelled = (await client.post("/speakers/alice", files=clip())).json()["adapter"]
        assert relabelled != enrolment and relabelled.startswith("verify-default@")


async def test_enrolments_under_the_old_whole_files_version_still_verify(tiny_store, store_copy, tmp_path) -> None:
    """Speakers enrolled before provenance left the hash sit under the files' old hash."""
    settings = make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)
    snapshot = AdapterStore(store_copy).snapshot("verify-default")
    assert snapshot.files_sha256 == files_sha256(snapshot.files) != snapshot.sha256
    async with running_app(settings) as (_, client):
        await client.post("/speakers/alice", files=clip())
        speakers = Path(settings.speakers_dir) / "verify-default"
        for older in (snapshot.version, snapshot.files_sha256[:12]):  # as the servers of each rule left it
            (speakers / snapshot.embedding_sha256[:12]).rename(speakers / older)
            answer = await client.post("/verify", files=clip(), data={"speaker": "alice"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["adapter"] == f"verify-default@{snapshot.version}"
            assert answer.json()["score"] == pytest.approx(1.0, abs=1e-4)
            (speakers / older).rename(speakers / snapshot.embedding_sha256[:12])
