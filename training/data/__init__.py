"""Corpus manifests (JSONL, one row per clip) and readers for the public corpora; torch-free."""

from training.data.manifest import (
    CTC_CHARS,
    SPLITS,
    ManifestError,
    ManifestRow,
    Trial,
    filter_split,
    normalize_text,
    read_manifest,
    read_trials,
    write_manifest,
    write_trials,
)

__all__ = [
    "CTC_CHARS",
    "SPLITS",
    "ManifestError",
    "ManifestRow",
    "Trial",
    "filter_split",
    "normalize_text",
    "read_manifest",
    "read_trials",
    "write_manifest",
    "write_trials",
]
