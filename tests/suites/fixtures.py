"""A fake Debian package cache and pocketsphinx sdist with a few seeded clips (real .deb files
built with dpkg-deb, so the suite builder runs its own extraction and decoding on them)."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpus.generate import stable_tag
from training.suites import registry
from training.suites.sources import DATA_PREFIX

TRANSCRIPT_LINES = [
    "; Core Asterisk Sounds in English", "", "activated: Activated.", "beep: [this is a simple beep tone]",
    "vm-intro: Please leave your message after the tone. (simple tone sound plays)",
    "digits/7: seven", "demo-enterkeywords: Please enter keywords separated by * and press the pound key.",
    "auth-thankyou: Thank you 2 times.",
]
ALLISON_PROMPTS = ("activated", "beep", "vm-intro", "digits/7", "demo-enterkeywords", "auth-thankyou")


def tone(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A seeded voiced-like signal: a harmonic tone at a seeded pitch plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(90, 250)
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * wave / 2.3 + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _write_audio(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = path.with_suffix(".tmp.wav")
    sf.write(wav, tone(seconds, 8000 if path.suffix != ".g722" else 16000, seed),
             8000 if path.suffix != ".g722" else 16000, subtype="PCM_16")
    if path.suffix == ".g722":
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-f", "g722", str(path)], check=True)
    elif path.suffix == ".gsm":
        subprocess.run(["sox", str(wav), str(path)], check=True)
    else:
        wav.rename(path)
    wav.unlink(missing_ok=True)


def _deb(cache: Path, package: str, files: dict[str, float | bytes]) -> None:
    """Build ``cache/<package>_1.0_all.deb`` holding ``files`` (seconds of audio, or raw bytes)."""
    root = cache / "src" / package
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: test fixture\n")
    for index, (name, content) in enumerate(sorted(files.items())):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            _write_audio(target, content, seed=stable_tag(package) % 1000 + index)
    subprocess.run(["dpkg-deb", "--build", "-Znone", str(root), str(cache / f"{package}_1.0_all.deb")], check=True,
                   capture_output=True)


def fake_deb_cache(cache: Path, clips_per_source: int = 3) -> Path:
    """Every package the human suite reads, each with a few clips of 1.2 s (one short clip too)."""
    cache.mkdir(parents=True, exist_ok=True)
    for source in registry.HUMAN_SOURCES:
        if not source.package.startswith("asterisk"):
            continue
        files: dict[str, float | bytes] = {f"{source.folder}/p{i}.{source.extension}": 1.2 for i in
                                           range(clips_per_source)}
        files[f"{source.folder}/short.{source.extension}"] = 0.4  # under a second: no trials
        if source.package == "asterisk-core-sounds-en-wav":
            files.update({f"{source.folder}/{p}.wav": 1.1 for p in ALLISON_PROMPTS})
        _deb(cache, source.package, files)
    allison = f"{registry.ASTERISK_SOUNDS}/en_US_f_Allison"
    _deb(cache, registry.ALLISON_WIDEBAND_PACKAGE, {f"{allison}/{p}.g722": 1.1 for p in ALLISON_PROMPTS})
    transcripts = gzip.compress("\n".join(TRANSCRIPT_LINES).encode())
    _deb(cache, registry.ALLISON_TRANSCRIPT_PACKAGE,
         {"usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz": transcripts})
    _deb(cache, "alsa-utils", {"usr/share/sounds/alsa/Front_Left.wav": 1.3, "usr/share/sounds/alsa/Rear_Right.wav": 1.3,
                               "usr/share/sounds/alsa/Noise.wav": 1.0})
    return cache


def _wav_bytes(seconds: float, rate: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, rate, seed), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def fake_sdist(path: Path) -> Path:
    members = {
        "librivox/a-0001.wav": _wav_bytes(1.5, 16000, 1), "librivox/a-0001.txt": b"he was not an ill disposed man\n",
        "librivox/a-0002.wav": _wav_bytes(1.4, 16000, 2), "librivox/a-0002.txt": b"it was a fine day\n",
        "cards/cards.transcription": b"<s> ten of clubs </s> (001)\n", "cards/001.wav": _wav_bytes(1.2, 16000, 3),
        "goforward.raw": (tone(1.1, 16000, 4) * 32767).astype("<i2").tobytes(),
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(DATA_PREFIX + name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path
