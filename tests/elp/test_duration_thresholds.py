"""A verification set's thresholds by duration: the table is validated when a config is built, the answer
reads the bin of the shorter clip (an enrolment: its clips' total), an enrolment's outliers are judged at
each clip's own duration, and the table stays outside the embedding version that keys enrolments."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from elp.adapter_files import content_sha256, embedding_sha256
from elp.config import AdapterSetConfig
from elp.errors import ConfigError
from elp.tasks.base import TaskRequest
from elp.tasks.verification import VERIFICATION, served_threshold

BACKBONE = {"model_type": "wavlm", "hidden_size": 8, "num_layers": 2, "fingerprint": "f"}
TABLE = [[0.0, 0.3], [1.0, 0.5], [2.5, 0.7]]


def config(**changes) -> AdapterSetConfig:
    return AdapterSetConfig(**({"task": "verification", "backbone": BACKBONE, "threshold": 0.6} | changes))


def test_the_bin_of_the_duration_gives_the_threshold() -> None:
    table = config(duration_thresholds=TABLE)
    assert [served_threshold(table, {}, s) for s in (0.2, 0.999, 1.0, 2.4, 2.5, 30.0)] == [0.3, 0.3, 0.5, 0.5,
                                                                                           0.7, 0.7]
    assert served_threshold(table, {}, None) == 0.6  # no duration known: the single threshold
    assert served_threshold(config(), {}, 0.2) == 0.6  # no table: the single threshold at every duration
    assert served_threshold(config(threshold=None), {"threshold": 0.45}, 0.2) == 0.45


@pytest.mark.parametrize("table", [[], [[0.5, 0.3]], [[0.0, 0.3], [0.0, 0.4]], [[0.0, 0.3], [2.0, 0.5], [1.0, 0.6]],
                                   [[0.0, 1.5]], [[0.0]]])
def test_a_malformed_table_is_refused(table) -> None:
    with pytest.raises(ConfigError, match="duration_thresholds"):
        config(duration_thresholds=table)


def test_the_table_round_trips_through_json() -> None:
    built = config(duration_thresholds=TABLE)
    assert AdapterSetConfig.from_dict(json.loads(json.dumps(built.to_dict()))).duration_thresholds == TABLE


def _row(vector: list[float]) -> SimpleNamespace:
    return SimpleNamespace(embedding=torch.tensor(vector))


def test_the_answer_reads_the_shorter_side() -> None:
    probe, reference = _row([1.0, 0.0]), _row([0.8, 0.6])  # cosine 0.8
    table = config(duration_thresholds=TABLE)
    for durations, expected in (([0.5, 4.0], 0.3), ([4.0, 1.2], 0.5), ([3.0, 4.0], 0.7)):
        answer = VERIFICATION.respond(TaskRequest(config=table, rows=[probe, reference], durations_s=durations))
        assert answer["threshold"] == expected and answer["same_speaker"] == (expected <= 0.8)
    enrolled = {"config": table, "rows": [probe], "fields": {"speaker": "alice"}, "enrolled": torch.tensor([0.0, 1.0])}
    # an enrolment of 1.4 s in all against a 3 s probe: the enrolment is the shorter side
    assert VERIFICATION.respond(TaskRequest(durations_s=[3.0], enrolled_duration_s=1.4, **enrolled))["threshold"] == 0.5
    assert VERIFICATION.respond(TaskRequest(durations_s=[0.4], enrolled_duration_s=9.0, **enrolled))["threshold"] == 0.3
    # an enrolment stored without its duration: the probe's
    assert VERIFICATION.respond(TaskRequest(durations_s=[3.0], **enrolled))["threshold"] == 0.7


def test_enrolment_outliers_are_judged_at_each_clips_duration() -> None:
    # the middle clip scores ~0.54 against the mean of the others, the outer two ~0.84
    clips = [torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.866]), torch.tensor([1.0, 0.1])]
    table = config(duration_thresholds=TABLE)
    assert VERIFICATION.enrolment_report(table, clips, {}, [0.5, 3.0, 0.5])["outlier_clips"] == [1]  # under 0.7
    assert VERIFICATION.enrolment_report(table, clips, {}, [3.0, 0.5, 3.0])["outlier_clips"] == []  # 0.3 / 0.7
    assert VERIFICATION.enrolment_report(table, clips, {})["outlier_clips"] == [1]  # no durations: 0.6


def test_the_table_keeps_enrolments_but_versions_the_set() -> None:
    weights = b"\x01" * 32
    plain = json.dumps(config().to_dict()).encode()
    tabled = json.dumps(config(duration_thresholds=TABLE).to_dict()).encode()
    assert embedding_sha256(plain, weights) == embedding_sha256(tabled, weights)
    assert content_sha256(plain, weights) != content_sha256(tabled, weights)
