"""Fluent Speech Commands reader for the published layout.

``<root>/data/{train,valid,test}_data.csv`` with header ``,path,speakerId,transcription,action,
object,location``; ``path`` is relative to ``<root>`` (``wavs/speakers/<spk>/<file>.wav``).
The intent label is ``f"{action}_{object}_{location}"`` (31 distinct intents on the full set).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from training.data._common import audio_duration
from training.data.manifest import ManifestError, ManifestRow, normalize_text

_COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")


def intent_label(action: str, obj: str, location: str) -> str:
    """The FSC intent as one class name, e.g. ``activate_lights_kitchen``."""
    return f"{action}_{obj}_{location}"


def read_fsc(root: str | os.PathLike[str]) -> list[ManifestRow]:
    """Intent rows for the three official CSV splits; the transcript is kept (normalised) in ``text``."""
    root = Path(root)
    rows: list[ManifestRow] = []
    for split in ("train", "valid", "test"):
        csv_path = root / "data" / f"{split}_data.csv"
        if not csv_path.is_file():
            raise ManifestError(f"FSC split file not found: {csv_path}")
        with csv_path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(f"{csv_path}:1: missing column(s) {missing}")
            for rec in reader:
                lineno = reader.line_num
                if any(rec.get(c) in (None, "") for c in _COLUMNS):
                    raise ManifestError(f"{csv_path}:{lineno}: empty or missing field in {rec}")
                wav = root / rec["path"]
                if not wav.is_file():
                    raise ManifestError(f"{csv_path}:{lineno}: audio missing: {wav}")
                spk = rec["speakerId"]
                rows.append(
                    ManifestRow(
                        id=f"{spk}/{wav.stem}",
                        path=str(wav.absolute()),
                        duration_s=audio_duration(wav),
                        split=split,
                        task="intent",
                        speaker=spk,
                        text=normalize_text(rec["transcription"]),
                        label=intent_label(rec["action"], rec["object"], rec["location"]),
                        meta={
                            "corpus": "fsc",
                            "action": rec["action"],
                            "object": rec["object"],
                            "location": rec["location"],
                            "raw_text": rec["transcription"],
                        },
                    )
                )
    return rows
