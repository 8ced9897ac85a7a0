"""Debian packages as a data source: ``apt-get download`` into a cache, ``dpkg -x``, decode to 16 kHz.

Nothing is installed: the .deb files are fetched as files (no root needed beyond apt's lists) and
unpacked into the cache, so the suite builds the same on a clean machine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
DEFAULT_DEB_CACHE = Path.home() / ".cache" / "elp-suites" / "debs"


def find_deb(cache: Path, package: str) -> Path | None:
    """The cached .deb of ``package`` (the name up to the first underscore must match exactly)."""
    hits = sorted(p for p in cache.glob(f"{package}_*.deb") if p.name.split("_", 1)[0] == package)
    return hits[-1] if hits else None


def fetch_deb(cache: Path, package: str) -> Path:
    """The package's .deb, downloaded with ``apt-get download`` unless the cache already has it."""
    cached = find_deb(cache, package)
    if cached is not None:
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"apt-get download {package} failed (run apt-get update?): {result.stderr.strip()}")
    fetched = find_deb(cache, package)
    if fetched is None:
        raise RuntimeError(f"apt-get download {package} left no .deb in {cache}")
    return fetched


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def extract_deb(deb: Path, root: Path) -> Path:
    """``dpkg -x`` into ``root/<deb stem>`` once; returns that folder."""
    target = root / deb.stem
    marker = target / ".extracted"
    if not marker.is_file():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
        marker.touch()
    return target


def ffmpeg_decode(source: str, input_args: Sequence[str] = (), payload: bytes | None = None) -> np.ndarray:
    """Mono float32 at 16 kHz by ffmpeg from ``source``: a file, or ``pipe:0`` fed ``payload`` (bytes in memory);
    ``input_args`` describe the input where ffmpeg cannot tell it (``-f g722``, raw sample formats)."""
    command = ["ffmpeg", "-v", "error", *input_args, "-i", source, "-ar", str(SAMPLE_RATE), "-ac", "1",
               "-f", "s16le", "-"]
    result = subprocess.run(command, input=payload, capture_output=True, check=True)  # raw 16-bit PCM
    return np.frombuffer(result.stdout, dtype="<i2").astype(np.float32) / 32768.0


def decode_file(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz: sox reads WAV and GSM, ffmpeg reads G.722 (sox cannot)."""
    if path.suffix == ".g722":
        return ffmpeg_decode(str(path), ["-f", "g722"])
    command = ["sox", "-V1", str(path), "-t", "raw", "-e", "signed", "-b", "16", "-L", "-r",
               str(SAMPLE_RATE), "-c", "1", "-"]
    result = subprocess.run(command, capture_output=True, check=True)  # raw 16-bit little-endian PCM
    return np.frombuffer(result.stdout, dtype="<i2").astype(np.float32) / 32768.0


def write_flac(wave: np.ndarray, path: Path) -> float:
    """16-bit FLAC at 16 kHz; returns the duration in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")  # renamed when complete: an interrupted build leaves no half clip
    sf.write(partial, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    partial.replace(path)
    return len(wave) / SAMPLE_RATE
