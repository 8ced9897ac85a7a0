"""/verify and /speakers read a set's duration table (HTTP in-process, tiny real models): the threshold of a
pair is the bin of its shorter clip, of an enrolled speaker the shorter of the probe and the enrolment's clips
in all, and an enrolment's outliers are judged at each clip's own duration."""

from __future__ import annotations

import json

import pytest

from tests.server.helpers import clip_files, make_settings, running_app, wav_bytes

pytestmark = pytest.mark.anyio

#: from 1.1 s on nothing passes but an exact match; under it everything passes: the bin is visible in the answer
TABLE = [[0.0, -1.0], [1.1, 1.0]]


@pytest.fixture
def settings(tiny_store, store_copy, tmp_path):
    config_path = store_copy / "verify-default" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"duration_thresholds": TABLE}))
    return make_settings(tiny_store[0], store_copy, tmp_path, insecure_open_admin=True)


async def test_the_shorter_side_picks_the_threshold(settings) -> None:
    long_a, long_b, short = wav_bytes(1.5, seed=31), wav_bytes(2.0, seed=32), wav_bytes(0.8, seed=33)
    async with running_app(settings) as (_, client):
        for probe, reference, expected in ((long_a, long_b, 1.0), (short, long_b, -1.0), (long_a, short, -1.0)):
            answer = (await client.post("/verify", files=clip_files(probe, reference=reference))).json()
            assert answer["threshold"] == expected, answer
            assert answer["same_speaker"] == (answer["score"] >= expected)

        enrolled = await client.post("/speakers/alice", files=[("file", ("a.wav", short)), ("file", ("b.wav", long_a))])
        assert enrolled.status_code == 200, enrolled.text
        scores = enrolled.json()["clip_scores"]
        # clip 0 (0.8 s) is judged at -1 and never an outlier; clip 1 (1.5 s) at 1.0 unless it scores exactly 1
        assert enrolled.json()["outlier_clips"] == [i for i, s in enumerate(scores) if s < (-1.0, 1.0)[i]]
        # the enrolment lasts 2.3 s: a 2 s probe is judged in the long bin, a 0.8 s probe in the short one
        for probe, expected in ((long_b, 1.0), (short, -1.0)):
            answer = (await client.post("/verify", files=clip_files(probe), data={"speaker": "alice"})).json()
            assert answer["threshold"] == expected, answer
        # an enrolment of one 0.8 s clip is the shorter side of any longer probe
        assert (await client.post("/speakers/bob", files=[("file", ("b.wav", short))])).status_code == 200
        answer = (await client.post("/verify", files=clip_files(long_b), data={"speaker": "bob"})).json()
        assert answer["threshold"] == -1.0, answer
