"""Manifest format shared by every corpus reader, the synthetic generator and the training loop.

One JSON object per line (JSONL), one line per clip::

    {"id": str, "path": str, "duration_s": float, "split": "train"|"valid"|"test",
     "task": <a task with sets of its own: elp.tasks.set_task_names()>, "speaker": str,
     "text": str|null, "label": str|null, "meta": {...}}

``path`` is stored relative to the manifest's folder so a prepared corpus can be moved as a
whole; :func:`read_manifest` resolves it to an absolute path. This module is deliberately
torch-free so data preparation runs on any machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elp.tasks import get_task, set_task_names

SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Characters the CTC head can emit besides the blank token (space is the word separator).
CTC_CHARS: str = " 'abcdefghijklmnopqrstuvwxyz"

_REQUIRED_KEYS = ("id", "path", "duration_s", "split", "task", "speaker", "text", "label", "meta")


class ManifestError(ValueError):
    """A manifest, trial list or corpus annotation file is malformed; the message names file and line."""


@dataclass(frozen=True)
class ManifestRow:
    """One audio clip with the supervision for exactly one task."""

    id: str
    path: str
    duration_s: float
    split: str
    task: str
    speaker: str
    text: str | None = None
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in schema key order."""
        return {
            "id": self.id,
            "path": self.path,
            "duration_s": self.duration_s,
            "split": self.split,
            "task": self.task,
            "speaker": self.speaker,
            "text": self.text,
            "label": self.label,
            "meta": self.meta,
        }


@dataclass(frozen=True)
class Trial:
    """One verification trial: label 1 = same speaker (target), 0 = different (non-target)."""

    label: int
    path_a: str
    path_b: str


def validate_row(obj: Any) -> ManifestRow:
    """Check one decoded JSON object against the schema; raise ValueError naming the bad field."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    unknown = sorted(set(obj) - set(_REQUIRED_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; put extra fields in 'meta'")
    for key in ("id", "path", "speaker"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise ValueError(f"'{key}' must be a non-empty string, got {obj[key]!r}")
    dur = obj["duration_s"]
    if isinstance(dur, bool) or not isinstance(dur, (int, float)) or not math.isfinite(dur) or dur < 0:
        raise ValueError(f"'duration_s' must be a finite number >= 0, got {dur!r}")
    if obj["split"] not in SPLITS:
        raise ValueError(f"'split' must be one of {SPLITS}, got {obj['split']!r}")
    if obj["task"] not in set_task_names():
        raise ValueError(f"'task' must be one of {set_task_names()}, got {obj['task']!r}")
    for key in ("text", "label"):
        if obj[key] is not None and not isinstance(obj[key], str):
            raise ValueError(f"'{key}' must be a string or null, got {obj[key]!r}")
    if not isinstance(obj["meta"], dict):
        raise ValueError(f"'meta' must be an object, got {obj['meta']!r}")
    target = get_task(obj["task"]).target_field  # what the task trains on: text, label or speaker
    if obj[target] is None:
        raise ValueError(f"task '{obj['task']}' needs a '{target}'")
    return ManifestRow(
        id=obj["id"],
        path=obj["path"],
        duration_s=float(dur),
        split=obj["split"],
        task=obj["task"],
        speaker=obj["speaker"],
        text=obj["text"],
        label=obj["label"],
        meta=obj["meta"],
    )


def read_manifest(path: str | os.PathLike[str], check_exists: bool = False) -> list[ManifestRow]:
    """Read and validate a JSONL manifest; row paths come back absolute.

    Blank lines are skipped. Any schema violation or duplicate id raises :class:`ManifestError`
    with ``file:line`` so a bad row in a 100k-line file is easy to find. ``check_exists`` also
    stats every audio file (off by default: slow on network storage).
    """
    path = Path(path)
    base = Path(os.path.abspath(path)).parent
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
            try:
                row = validate_row(obj)
            except ValueError as exc:
                raise ManifestError(f"{path}:{lineno}: {exc}") from exc
            if row.id in seen:
                raise ManifestError(
                    f"{path}:{lineno}: duplicate id {row.id!r} (first on line {seen[row.id]})"
                )
            seen[row.id] = lineno
            abs_path = os.path.normpath(base / row.path)
            if check_exists and not os.path.exists(abs_path):
                raise ManifestError(f"{path}:{lineno}: audio file not found: {abs_path}")
            rows.append(_replace_path(row, abs_path))
    return rows


def write_manifest(rows: Iterable[ManifestRow], path: str | os.PathLike[str]) -> Path:
    """Write rows as JSONL with paths made relative to the manifest's folder.

    Absolute row paths are rewritten relative to that folder; relative ones are taken as already
    relative to it. Rows are validated first so a writer can never produce a file
    :func:`read_manifest` rejects.
    The file is written to a temporary name and renamed, so readers never see half a manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.abspath(path)).parent
    tmp = path.with_name(path.name + ".tmp")
    seen: set[str] = set()
    with tmp.open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            try:
                validate_row(row.to_dict())
            except ValueError as exc:
                raise ManifestError(f"row {i} ({row.id!r}): {exc}") from exc
            if row.id in seen:
                raise ManifestError(f"row {i}: duplicate id {row.id!r}")
            seen.add(row.id)
            d = row.to_dict()
            p = Path(row.path)
            d["path"] = Path(os.path.relpath(p if p.is_absolute() else base / p, base)).as_posix()
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def filter_split(rows: Iterable[ManifestRow], split: str, task: str | None = None) -> list[ManifestRow]:
    """Rows of one split (and optionally one task), in their original order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [r for r in rows if r.split == split and (task is None or r.task == task)]


def read_trials(
    path: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    check_exists: bool = False,
) -> list[Trial]:
    """Read a VoxCeleb1-style trial list (``1 a.wav b.wav`` per line).

    Paths are resolved against ``base_dir`` (for the official ``veri_test2.txt`` that is
    ``<voxceleb1>/wav``); by default against the trial file's own folder, matching manifests.
    """
    path = Path(path)
    base = Path(os.path.abspath(base_dir if base_dir is not None else path.parent))
    trials: list[Trial] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ManifestError(
                    f"{path}:{lineno}: expected '<0|1> <path_a> <path_b>', got {line.strip()!r}"
                )
            a, b = (os.path.normpath(base / p) for p in parts[1:])
            if check_exists:
                for p in (a, b):
                    if not os.path.exists(p):
                        raise ManifestError(f"{path}:{lineno}: audio file not found: {p}")
            trials.append(Trial(int(parts[0]), a, b))
    return trials


def write_trials(trials: Sequence[Trial], path: str | os.PathLike[str]) -> Path:
    """Write trials in the VoxCeleb format with paths relative to the file's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.abspath(path)).parent
    with path.open("w", encoding="utf-8") as fh:
        for t in trials:
            rel = [Path(os.path.relpath(os.path.abspath(p), base)).as_posix() for p in (t.path_a, t.path_b)]
            if any(" " in r for r in rel):
                raise ManifestError(f"trial paths may not contain spaces: {rel}")
            fh.write(f"{int(t.label)} {rel[0]} {rel[1]}\n")
    return path


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_NOT_VOCAB = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r" {2,}")


def normalize_text(text: str) -> str:
    """Map a transcript onto the CTC vocabulary: lower-case a-z, apostrophe and single spaces.

    Accents are stripped (``café`` -> ``cafe``), typographic apostrophes become ``'``, and every
    other character (digits, punctuation, hyphens) becomes a word break, so training targets
    and WER references agree on what a word is.
    """
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _NOT_VOCAB.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _replace_path(row: ManifestRow, new_path: str) -> ManifestRow:
    d = row.to_dict()
    d["path"] = new_path
    return ManifestRow(**d)


def extra_splits(folder: str, task: str, labels: list[str] | None) -> tuple[dict, list, list]:
    """(record, train rows, valid rows) of one extra corpus' ``<task>.jsonl``; its test rows are left
    unread. Labels outside the set's own raise (a set cannot learn a class it has no output for)."""
    manifest = Path(folder) / f"{task}.jsonl"
    rows = read_manifest(manifest)
    train, valid = filter_split(rows, "train"), filter_split(rows, "valid")
    if not train and not valid:
        raise SystemExit(f"{manifest} has no train or valid rows")
    if labels is not None:
        unknown = sorted({r.label for r in (*train, *valid)} - set(labels))
        if unknown:
            raise SystemExit(f"{manifest}: labels the set does not have: {unknown[:5]}")
    record = {"path": str(folder), "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
              "train": len(train), "valid": len(valid)}
    return record, train, valid


def stable_order(names: Iterable[str], seed: int) -> list[str]:
    """``names`` in a seeded hash order: the same names and seed give the same order whatever order they came in,
    so a seeded draw of groups, voices or rows does not move when the listing does."""
    return sorted(names, key=lambda n: hashlib.sha256(f"{seed}|{n}".encode()).hexdigest())


def repeated(rows: list, times: int) -> list:
    """Each row ``times`` times in a row, the copies told apart by their ids (``<id>-r<k>``)."""
    if times < 1:
        raise ValueError(f"rows are listed at least once, not {times} times")
    if times == 1:
        return list(rows)
    return [dataclasses.replace(row, id=f"{row.id}-r{k}") for row in rows for k in range(times)]
