"""Small helpers shared by the corpus readers."""

from __future__ import annotations

import os

import soundfile as sf

from training.data.manifest import ManifestError


def audio_duration(path: str | os.PathLike[str]) -> float:
    """Duration in seconds from the file header (no decode), so preparing 100k clips stays fast."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # libsndfile reports missing/corrupt files here
        raise ManifestError(f"cannot read audio header of {path}: {exc}") from exc
    return round(info.frames / info.samplerate, 4)
