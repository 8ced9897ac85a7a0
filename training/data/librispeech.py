"""LibriSpeech reader for the published layout.

``<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter folder. Subsets map to splits by prefix:
``train-*`` -> train, ``dev-*`` -> valid, ``test-*`` -> test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from training.data._common import audio_duration
from training.data.manifest import ManifestError, ManifestRow, normalize_text

_PREFIX_TO_SPLIT = {"train-": "train", "dev-": "valid", "test-": "test"}


def subset_split(subset: str) -> str | None:
    """Split for a LibriSpeech subset folder name, or None if it is not a subset folder."""
    for prefix, split in _PREFIX_TO_SPLIT.items():
        if subset.startswith(prefix):
            return split
    return None


def _find_root(root: Path) -> Path:
    """Accept both the folder holding the subsets and its parent (tarballs extract to ``LibriSpeech/``)."""
    if (
        not any(subset_split(p.name) for p in root.iterdir() if p.is_dir())
        and (root / "LibriSpeech").is_dir()
    ):
        return root / "LibriSpeech"
    return root


def read_librispeech(root: str | os.PathLike[str], subsets: Sequence[str] | None = None) -> list[ManifestRow]:
    """ASR rows for every utterance of the chosen subsets (default: all found under ``root``).

    ``text`` is the transcript normalised for the CTC vocabulary; the original is kept in
    ``meta["raw_text"]``. A transcript line without its flac raises, because a silently
    shrunken training set is worse than a failed preparation.
    """
    base = _find_root(Path(root))
    if not base.is_dir():
        raise ManifestError(f"LibriSpeech root not found: {base}")
    found = sorted(p.name for p in base.iterdir() if p.is_dir() and subset_split(p.name))
    if subsets is None:
        subsets = found
    for s in subsets:
        if s not in found:
            raise ManifestError(f"LibriSpeech subset {s!r} not found under {base} (have {found})")
    rows: list[ManifestRow] = []
    for subset in subsets:
        split = subset_split(subset)
        assert split is not None
        for trans in sorted((base / subset).glob("*/*/*.trans.txt")):
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            with trans.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    utt, _, raw = line.strip().partition(" ")
                    if not raw or not utt.startswith(f"{speaker}-{chapter}-"):
                        raise ManifestError(f"{trans}:{lineno}: expected '<spk>-<chapter>-<utt> TEXT'")
                    flac = trans.parent / f"{utt}.flac"
                    if not flac.is_file():
                        raise ManifestError(f"{trans}:{lineno}: audio missing: {flac}")
                    rows.append(
                        ManifestRow(
                            id=utt,
                            path=str(flac.absolute()),
                            duration_s=audio_duration(flac),
                            split=split,
                            task="asr",
                            speaker=speaker,
                            text=normalize_text(raw),
                            label=None,
                            meta={
                                "corpus": "librispeech",
                                "subset": subset,
                                "chapter": chapter,
                                "raw_text": raw,
                            },
                        )
                    )
    return rows
