"""Small recording sets beside the Debian prompts: the pocketsphinx sdist's test data and ALSA.

* the pocketsphinx 5.1.1 source distribution on PyPI (sha256-pinned), its test data: five
  sentences of a LibriVox reading (one reader), five spoken card names and "go forward ten meters"
  (CMU recordings whose speakers are undocumented: ASR only);
* alsa-utils' eight channel announcements ("front left", ... one voice), read from the package.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SDIST_NAME = "pocketsphinx-5.1.1.tar.gz"
SDIST_SHA256 = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
SIMPLE_INDEX = "https://pypi.org/simple/pocketsphinx/"
DATA_PREFIX = "pocketsphinx-5.1.1/test/data/"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class HumanClip:
    clip_id: str
    source: str  # one recording set: librivox, cards, goforward, alsa
    text: str
    audio: np.ndarray  # mono float32 at 16 kHz


def to_16k(data: bytes) -> np.ndarray:
    """Mono float32 at 16 kHz from any file soundfile reads (``elp.audio``: as the server reads it)."""
    from elp.audio import load_audio

    return load_audio(data, SAMPLE_RATE)


def fetch_sdist(cache: Path) -> Path:
    """The pinned sdist from PyPI's simple index (JSON form), checked against its sha256."""
    target = cache / SDIST_NAME
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SDIST_SHA256:
        return target
    import httpx

    listing = httpx.get(SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60)
    listing.raise_for_status()
    url = next(f["url"] for f in listing.json()["files"] if f["filename"] == SDIST_NAME)
    payload = httpx.get(url, timeout=300, follow_redirects=True).content
    if hashlib.sha256(payload).hexdigest() != SDIST_SHA256:
        raise SystemExit(f"{url}: sha256 mismatch, refusing it")
    cache.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return target


def cards_transcripts(text: str) -> dict[str, str]:
    """``<s> ten of clubs </s> (001)`` lines -> {"001": "ten of clubs"}."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*<s>\s*(.*?)\s*</s>\s*\((\w+)\)\s*", line)
        if match:
            out[match.group(2)] = match.group(1)
    return out


def alsa_transcript(path: Path) -> str:
    """``Front_Center.wav`` -> "front center" (what the file says)."""
    return path.stem.replace("_", " ").lower()


def pocketsphinx_clips(sdist: Path) -> list[HumanClip]:
    with tarfile.open(sdist) as archive:
        files = {
            m.name.removeprefix(DATA_PREFIX): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile() and m.name.startswith(DATA_PREFIX) and m.name.split("/")[-2] in ("librivox", "cards", "data")
        }
    clips = []
    for name in sorted(n for n in files if n.startswith("librivox/") and n.endswith(".wav")):
        text = files[name.removesuffix(".wav") + ".txt"].decode().strip()
        clips.append(HumanClip(Path(name).stem, "librivox", text, to_16k(files[name])))
    for utterance, text in sorted(cards_transcripts(files["cards/cards.transcription"].decode()).items()):
        clips.append(HumanClip(f"cards-{utterance}", "cards", text, to_16k(files[f"cards/{utterance}.wav"])))
    raw = np.frombuffer(files["goforward.raw"], dtype="<i2").astype(np.float32) / 32768.0  # 16 kHz PCM-16
    clips.append(HumanClip("goforward", "goforward", "go forward ten meters", raw))
    return clips


def alsa_clips(folder: Path) -> list[HumanClip]:
    return [
        HumanClip(f"alsa-{path.stem.lower()}", "alsa", alsa_transcript(path), to_16k(path.read_bytes()))
        for path in sorted(folder.glob("*.wav"))
        if path.stem != "Noise"
    ]
