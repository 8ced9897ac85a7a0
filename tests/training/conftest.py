"""Tiny fake corpora in the exact published layouts, so reader tests run in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


@pytest.fixture(autouse=True)
def level_speech_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' clips are noise stand-ins, which the voice detector rightly hears no voice in: the
    evaluation code applies the level rule here, as under ``ELP_SPEECH_DETECTOR=level``
    (tests/training/test_evaluation_gate.py checks the voice default)."""
    monkeypatch.setenv("ELP_SPEECH_DETECTOR", "level")


def write_audio(path: Path, seconds: float = 0.1, seed: int = 0) -> Path:
    """Low-level noise clip; the format follows the suffix (.wav or .flac)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.1, 0.1, int(SR * seconds)).astype(np.float32)
    sf.write(str(path), x, SR, subtype="PCM_16")
    return path


@pytest.fixture
def librispeech_root(tmp_path: Path) -> Path:
    """3 subsets, 2 speakers in train; 5 utterances in total."""
    root = tmp_path / "LibriSpeech"
    layout = {
        ("train-clean-100", "103", "1240"): ["CHAPTER ONE MISSUS RACHEL LYNDE", "IS SURPRISED"],
        ("train-clean-100", "19", "198"): ["NORTHANGER ABBEY"],
        ("dev-clean", "84", "121123"): ["GO DO YOU HEAR"],
        ("test-clean", "61", "70968"): ["HE BEGAN A CONFUSED COMPLAINT"],
    }
    for (subset, spk, chap), texts in layout.items():
        folder = root / subset / spk / chap
        lines = []
        for i, text in enumerate(texts):
            utt = f"{spk}-{chap}-{i:04d}"
            write_audio(folder / f"{utt}.flac", seconds=0.1 + 0.05 * i)
            lines.append(f"{utt} {text}")
        (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def voxceleb_root(tmp_path: Path) -> Path:
    """Two train speakers (id10001 with 2 videos, id10002 with 1) and two test speakers."""
    root = tmp_path / "voxceleb1"
    clips = [
        "id10001/1zcIwhmdeo4/00001.wav",
        "id10001/1zcIwhmdeo4/00002.wav",
        "id10001/7gWzIy6yIIk/00001.wav",
        "id10002/0_laIeN-Q44/00001.wav",
        "id10270/x6uYqmx31kE/00001.wav",
        "id10270/8jEAjG6SegY/00008.wav",
        "id10309/0cYFdtyWVds/00001.wav",
    ]
    for i, c in enumerate(clips):
        write_audio(root / "wav" / c, seed=i)
    (root / "veri_test2.txt").write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10309/0cYFdtyWVds/00001.wav\n"
    )
    return root


@pytest.fixture
def audio_writer():
    """The clip writer as a fixture, so tests never ``import conftest`` (ambiguous across folders)."""
    return write_audio


IEMOCAP_EVAL_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _turn(start: float, utt: str, emo: str) -> str:
    return f"[{start:.4f} - {start + 2:.4f}]\t{utt}\t{emo}\t[2.5000, 2.5000, 2.5000]\n"


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    """Five sessions, one dialog each, with a neu/exc/fru/ang/sad/hap mix from both speakers."""
    root = tmp_path / "IEMOCAP_full_release"
    emos = [
        ("F000", "neu"),
        ("M000", "exc"),
        ("F001", "fru"),
        ("M001", "ang"),
        ("F002", "sad"),
        ("M002", "hap"),
    ]
    for s in range(1, 6):
        dialog = f"Ses{s:02d}F_impro01"
        body = IEMOCAP_EVAL_HEADER
        for k, (suffix, emo) in enumerate(emos):
            utt = f"{dialog}_{suffix}"
            write_audio(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{utt}.wav", seed=k)
            body += _turn(2.0 * k, utt, emo)
            body += "C-E2:\tNeutral state;\t()\nA-E1:\tval 3; act 2; dom  3;\t()\n\n"
        ev = root / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(body)
    return root


@pytest.fixture
def fsc_root(tmp_path: Path) -> Path:
    """One speaker per split; train has 2 commands."""
    root = tmp_path / "fluent_speech_commands_dataset"
    header = ",path,speakerId,transcription,action,object,location\n"
    data = {
        "train": [
            (
                "2BqVo8kVB2Skwgyb",
                "0a3129c0-4474-11e9-a9a5-5dbec3b8816a",
                "Turn on the lights",
                "activate",
                "lights",
                "none",
            ),
            (
                "2BqVo8kVB2Skwgyb",
                "0ee42a80-4474-11e9-a9a5-5dbec3b8816a",
                "Turn up the heat in the kitchen",
                "increase",
                "heat",
                "kitchen",
            ),
        ],
        "valid": [
            (
                "4BrX8aDqK2cLZRYl",
                "1b2c3d4e-0000-0000-0000-000000000001",
                "Switch off the lights",
                "deactivate",
                "lights",
                "none",
            )
        ],
        "test": [
            (
                "52XVOeXMXYuaElyw",
                "5e6f7a8b-0000-0000-0000-000000000002",
                "Bring me my shoes",
                "bring",
                "shoes",
                "none",
            )
        ],
    }
    (root / "data").mkdir(parents=True)
    for split, recs in data.items():
        lines = [header]
        for i, (spk, stem, text, a, o, loc) in enumerate(recs):
            rel = f"wavs/speakers/{spk}/{stem}.wav"
            write_audio(root / rel, seed=i)
            lines.append(f"{i},{rel},{spk},{text},{a},{o},{loc}\n")
        (root / "data" / f"{split}_data.csv").write_text("".join(lines))
    return root
