"""The guard refuses training rows from the held-out suites, and elp-train calls it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.manifest import ManifestRow, write_manifest
from training.suites.guard import (
    HeldOutDataError,
    check_choice_rows,
    check_training_rows,
    choice_refusal,
    held_out_reason,
)
from training.suites.phrasings import held_out_phrasings


def _row(tmp_path: Path, **changes) -> ManifestRow:
    base = {"id": "a", "path": str(tmp_path / "corpus" / "audio" / "a.flac"), "duration_s": 1.0, "split": "train",
            "task": "asr", "speaker": "spk-train-001", "text": "the old man carried the box", "label": None,
            "meta": {"synth": "espeak"}}
    return ManifestRow(**{**base, **changes})


def test_ordinary_corpus_rows_pass(tmp_path: Path) -> None:
    check_training_rows([_row(tmp_path)])
    check_training_rows([_row(tmp_path, meta={"source": "flight-of-the-amazon-queen"})])  # the game's words: yes


@pytest.mark.parametrize("changes, reason", [
    ({"speaker": "allison"}, "held-out real person"),
    ({"speaker": "june"}, "held-out real person"),  # valid speakers choose thresholds: never trained on either
    ({"meta": {"synth": "kokoro"}}, "Kokoro"),
    ({"text": held_out_phrasings()["bring_socks_none"][0]}, "held-out intent phrasing"),
    ({"task": "verification", "text": None, "meta": {"source": "flight-of-the-amazon-queen"}}, "game dialogue suite"),
])
def test_held_out_rows_are_refused(tmp_path: Path, changes: dict, reason: str) -> None:
    assert reason in (held_out_reason(_row(tmp_path, **changes)) or "")
    with pytest.raises(HeldOutDataError, match=reason):
        check_training_rows([_row(tmp_path), _row(tmp_path, id="b", **changes)])


def test_audio_inside_a_suite_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "far").mkdir()
    (tmp_path / "far" / "suite.json").write_text("{}")
    row = _row(tmp_path, path=str(tmp_path / "far" / "audio" / "asr" / "x.flac"))
    with pytest.raises(HeldOutDataError, match="evaluation suite folder"):
        check_training_rows([row])


@pytest.mark.slow  # imports the whole training stack
def test_elp_train_refuses_a_corpus_with_a_held_out_speaker(tmp_path: Path) -> None:
    from training.train import main

    corpus = tmp_path / "corpus"
    write_manifest([_row(tmp_path, speaker="armelle", task="verification", label="armelle", text=None)],
                   corpus / "verification.jsonl")
    with pytest.raises(HeldOutDataError, match="armelle"):
        main(["--task", "verification", "--corpus", str(corpus), "--backbone", str(tmp_path / "none"),
              "--run-dir", str(tmp_path / "run"), "--device", "cpu"])


def _suite(tmp_path: Path, name: str, role: str | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "suite.json").write_text(json.dumps({"suite": name} | ({"role": role} if role else {})))
    return folder


def test_choosing_may_read_validation_suites_and_valid_speakers_but_never_a_final_figure(tmp_path: Path) -> None:
    valid_suite, far, human = (_suite(tmp_path, n, r) for n, r in [("kokoro-asr-valid", "valid"), ("far", None),
                                                                   ("human", None)])
    allowed = [_row(tmp_path), _row(tmp_path, path=str(valid_suite / "audio" / "x.flac"), meta={"synth": "kokoro"}),
               _row(tmp_path, speaker="june", path=str(human / "audio" / "j.flac"))]  # a valid real speaker
    assert [choice_refusal(row) for row in allowed] == [None, None, None]
    check_choice_rows(allowed)
    refused = {
        "test speaker": _row(tmp_path, speaker="allison", path=str(human / "audio" / "a.flac")),
        "'far' suite": _row(tmp_path, path=str(far / "audio" / "asr" / "x.flac"), meta={"synth": "kokoro"}),
        "held-out intent phrasing": _row(tmp_path, text=held_out_phrasings()["bring_socks_none"][0]),
    }
    for reason, row in refused.items():
        assert reason in (choice_refusal(row) or ""), reason
        with pytest.raises(HeldOutDataError, match="may not choose"):
            check_choice_rows([*allowed, row])
    check_choice_rows(allowed, manifest=valid_suite / "asr.jsonl")
    with pytest.raises(HeldOutDataError, match="'far' suite"):  # a final-figure manifest, whatever its rows
        check_choice_rows([_row(tmp_path)], manifest=far / "asr.jsonl")
