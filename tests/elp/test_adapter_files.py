"""The adapter file format: the version hash covers content (weights + answer-changing config)
and never provenance (description, metrics, training record, model card)."""

from __future__ import annotations

import json

import pytest

from elp.adapter_files import (
    ADAPTER_FILES,
    CONFIG_NAME,
    PROVENANCE_FIELDS,
    WEIGHTS_NAME,
    content_sha256,
    embedding_sha256,
    files_sha256,
    safetensors_totals,
)

CONFIG = {"task": "verification", "backbone": {"model_type": "wavlm", "fingerprint": "f"}, "threshold": 0.7,
          "labels": None, "description": "first words", "metrics": {"eer": 0.1}, "training": {"seed": 0}}
WEIGHTS = b"\x10" * 64


def config_bytes(**changes) -> bytes:
    return json.dumps(CONFIG | changes, indent=2).encode()


@pytest.mark.parametrize("field,value", [("description", "other words"), ("metrics", {"eer": 0.01}),
                                         ("training", {"seed": 1, "default": True})])
def test_provenance_edits_keep_the_version(field: str, value: object) -> None:
    assert field in PROVENANCE_FIELDS
    assert content_sha256(config_bytes(**{field: value}), WEIGHTS) == content_sha256(config_bytes(), WEIGHTS)


def test_formatting_and_key_order_keep_the_version() -> None:
    compact = json.dumps(dict(reversed(list(CONFIG.items()))), separators=(",", ":")).encode()
    assert content_sha256(compact, WEIGHTS) == content_sha256(config_bytes(), WEIGHTS)


@pytest.mark.parametrize("changes", [{"threshold": 0.71}, {"labels": ["a"]}, {"backbone": {"model_type": "x"}}])
def test_content_edits_make_a_new_version(changes: dict) -> None:
    assert content_sha256(config_bytes(**changes), WEIGHTS) != content_sha256(config_bytes(), WEIGHTS)


def test_the_embedding_version_leaves_out_the_threshold_and_nothing_else_of_the_content() -> None:
    """Enrolments are keyed by it: a recalibration keeps them, any other content edit does not."""
    base = embedding_sha256(config_bytes(), WEIGHTS)
    assert embedding_sha256(config_bytes(threshold=0.71, description="x"), WEIGHTS) == base
    assert base != content_sha256(config_bytes(), WEIGHTS)
    for changes in ({"labels": ["a"]}, {"backbone": {"model_type": "x"}}):
        assert embedding_sha256(config_bytes(**changes), WEIGHTS) != base
    assert embedding_sha256(config_bytes(), WEIGHTS + b"\0") != base


def test_weights_are_content() -> None:
    assert content_sha256(config_bytes(), WEIGHTS + b"\0") != content_sha256(config_bytes(), WEIGHTS)


def test_a_corrupt_config_still_has_a_version() -> None:
    assert content_sha256(b"{not json", WEIGHTS) != content_sha256(b"{not json!", WEIGHTS)


def test_the_old_rule_hashed_every_byte() -> None:
    """The pre-provenance version (kept so old enrolments resolve) changes with the description."""
    files = {CONFIG_NAME: config_bytes(), WEIGHTS_NAME: WEIGHTS}
    edited = files | {CONFIG_NAME: config_bytes(description="x")}
    assert set(files) == set(ADAPTER_FILES) and files_sha256(files) != files_sha256(edited)


def test_safetensors_totals_skip_language_model_parameters() -> None:
    header = {"__metadata__": {"format": "elp"},
              "head.weight": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
              "language_model.table": {"dtype": "I64", "shape": [3], "data_offsets": [32, 56]}}
    raw = json.dumps(header).encode()
    data = len(raw).to_bytes(8, "little") + raw + b"\0" * 56
    assert safetensors_totals(data) == (8, 32 + 24)
    for bad in (b"", b"\xff" * 8, (4).to_bytes(8, "little") + b"[1] "):
        with pytest.raises(ValueError):
            safetensors_totals(bad)
