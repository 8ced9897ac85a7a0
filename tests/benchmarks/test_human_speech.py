"""The human-speech benchmark reads its recordings and transcripts right and pairs speakers as
documented (the download itself needs PyPI and is not exercised here)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.human_speech import (
    DATA_PREFIX,
    HumanClip,
    alsa_clips,
    cards_transcripts,
    pocketsphinx_clips,
    speaker_trials,
)


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


def test_speaker_trials_follow_the_documented_assumptions() -> None:
    silent = np.zeros(10, dtype=np.float32)
    clips = [HumanClip(f"{source}-{i}", source, "", silent)
             for source, count in (("librivox", 2), ("alsa", 2), ("cards", 2), ("goforward", 1)) for i in range(count)]
    trials = {(clips[a].clip_id, clips[b].clip_id): label for a, b, label in speaker_trials(clips)}
    assert trials[("librivox-0", "librivox-1")] == 1 and trials[("alsa-0", "alsa-1")] == 1
    assert trials[("librivox-0", "alsa-1")] == 0 and trials[("alsa-0", "goforward-0")] == 0
    assert ("cards-0", "cards-1") not in trials  # one CMU speaker or several: unknown, so unpaired
    # who recorded the pocketsphinx clips is undocumented: no pairs across them either
    assert ("librivox-0", "cards-0") not in trials and ("cards-0", "goforward-0") not in trials
    assert sum(trials.values()) == 2 and len(trials) == 2 + 2 * (2 + 2 + 1)
