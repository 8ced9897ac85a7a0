"""``elp-train --extra-corpus DIR --extra-repeat N``: a second corpus (e.g. real voices) joins the training and
validation rows of a run, weighed by listing its clips N times; its test rows are never read, and the held-out
guard applies to it as to the main corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.suites.guard import HeldOutDataError
from training.train import _read_splits, build_parser


def _manifest(root: Path, prefix: str, counts: dict[str, int], meta: dict | None = None) -> Path:
    root.mkdir(parents=True)
    rows = [{"id": f"{prefix}-{split}-{i}", "path": f"audio/{prefix}-{split}-{i}.flac", "duration_s": 1.0 + i,
             "split": split, "task": "asr", "speaker": f"{prefix}-spk{i % 2}", "text": f"words number {i}",
             "label": None, "meta": dict(meta or {})}
            for split, count in counts.items() for i in range(count)]
    (root / "asr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _splits(*argv: str):
    args = build_parser().parse_args(["--task", "asr", *argv])
    return _read_splits(args, Path(args.corpus))


def test_extra_rows_join_train_and_valid_each_copy_with_its_own_id_and_its_test_is_never_read(tmp_path):
    main = _manifest(tmp_path / "main", "m", {"train": 3, "valid": 2, "test": 2})
    extra = _manifest(tmp_path / "extra", "x", {"train": 2, "valid": 1, "test": 4})
    splits = _splits("--corpus", str(main), "--extra-corpus", str(extra), "--extra-repeat", "3")
    assert [r.id for r in splits.train] == ["m-train-0", "m-train-1", "m-train-2",
                                            "x-train-0-r0", "x-train-0-r1", "x-train-0-r2",
                                            "x-train-1-r0", "x-train-1-r1", "x-train-1-r2"]
    assert {r.path for r in splits.train[3:6]} == {str(extra / "audio/x-train-0.flac")}  # copies of one clip
    assert [r.id for r in splits.valid] == ["m-valid-0", "m-valid-1", "x-valid-0"]
    assert [r.id for r in splits.test] == ["m-test-0", "m-test-1"]
    (record,) = splits.extra_corpora  # kept in the trained set's record
    assert (record["path"], record["train"], record["valid"]) == (str(extra), 2, 1)
    assert len(record["manifest_sha256"]) == 64


def test_without_a_repeat_the_extra_rows_keep_their_ids_and_two_extras_both_join(tmp_path):
    main = _manifest(tmp_path / "main", "m", {"train": 1, "valid": 1})
    a = _manifest(tmp_path / "a", "a", {"train": 2})
    b = _manifest(tmp_path / "b", "b", {"valid": 2})
    splits = _splits("--corpus", str(main), "--extra-corpus", str(a), "--extra-corpus", str(b))
    assert [r.id for r in splits.train] == ["m-train-0", "a-train-0", "a-train-1"]
    assert [r.id for r in splits.valid] == ["m-valid-0", "b-valid-0", "b-valid-1"]


def test_an_extra_corpus_holding_held_out_voices_is_refused(tmp_path):
    main = _manifest(tmp_path / "main", "m", {"train": 1, "valid": 1})
    far = _manifest(tmp_path / "far", "k", {"train": 2}, meta={"synth": "kokoro"})
    with pytest.raises(HeldOutDataError, match="Kokoro"):
        _splits("--corpus", str(main), "--extra-corpus", str(far))


def test_a_repeat_below_one_is_refused(tmp_path):
    main = _manifest(tmp_path / "main", "m", {"train": 1, "valid": 1})
    extra = _manifest(tmp_path / "extra", "x", {"train": 1})
    with pytest.raises(SystemExit, match="extra-repeat"):
        _splits("--corpus", str(main), "--extra-corpus", str(extra), "--extra-repeat", "0")
