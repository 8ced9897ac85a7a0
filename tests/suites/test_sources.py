"""The pocketsphinx sdist and ALSA readers (moved from benchmarks/human_speech.py): recordings and
transcripts read right (the download itself needs PyPI and is not exercised here)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from training.suites.sources import DATA_PREFIX, alsa_clips, cards_transcripts, pocketsphinx_clips


def _wav(seconds: float, rate: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)), rate, format="WAV")
    return buffer.getvalue()


def test_cards_transcription_lines_parse() -> None:
    text = "<s> ten of clubs  </s> (001)\n<s> five five  </s> (004)\nnoise line\n"
    assert cards_transcripts(text) == {"001": "ten of clubs", "004": "five five"}


def test_sdist_clips_come_out_at_16k_with_their_transcripts(tmp_path: Path) -> None:
    members = {
        "librivox/book-0870.wav": _wav(1.0, 22050, 0),
        "librivox/book-0870.txt": b"he was not an ill disposed young man\n",
        "cards/cards.transcription": b"<s> ten of clubs </s> (001)\n",
        "cards/001.wav": _wav(0.5, 16000, 1),
        "goforward.raw": (np.zeros(8000, dtype="<i2") + 100).tobytes(),
        "goforward.gram": b"not audio",
    }
    sdist = tmp_path / "pocketsphinx-5.1.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(DATA_PREFIX + name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    clips = pocketsphinx_clips(sdist)
    assert [(c.clip_id, c.source, c.text) for c in clips] == [
        ("book-0870", "librivox", "he was not an ill disposed young man"),
        ("cards-001", "cards", "ten of clubs"),
        ("goforward", "goforward", "go forward ten meters"),
    ]
    assert [len(c.audio) for c in clips] == [16000, 8000, 8000]  # 22.05 kHz resampled; raw is 16 kHz
    assert abs(float(clips[2].audio[0]) - 100 / 32768) < 1e-6


def test_alsa_names_are_the_transcripts_and_noise_is_skipped(tmp_path: Path) -> None:
    for name in ("Front_Left", "Rear_Center", "Noise"):
        (tmp_path / f"{name}.wav").write_bytes(_wav(0.2, 48000, 2))
    clips = alsa_clips(tmp_path)
    assert [(c.clip_id, c.text, len(c.audio)) for c in clips] == [
        ("alsa-front_left", "front left", 3200), ("alsa-rear_center", "rear center", 3200)]
