"""IEMOCAP reader for the published layout, 4-class emotion with leave-one-session-out folds.

Audio: ``<root>/Session{n}/sentences/wav/<dialog>/<utt>.wav``; labels from
``<root>/Session{n}/dialog/EmoEvaluation/<dialog>.txt`` lines such as
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``.

Classes are the usual four: neu, hap, ang, sad, with ``exc`` merged into ``hap`` (5531 clips on
the full corpus); every other category (fru, sur, fea, dis, oth, xxx) is dropped.

Folds: fold ``n`` tests on Session n. Validation comes from the next session cyclically
(``n % 5 + 1``): by default only its female speaker (``valid_mode="speaker"``), so training keeps
3.5 sessions and never sees a validation voice; ``valid_mode="session"`` holds out the whole
next session. The speaker id is session + gender of the talker, e.g. ``Ses01F``, taken from the
utterance suffix (``..._F000``), not from the dialog name (which names the marker wearer).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from training.data._common import audio_duration
from training.data.manifest import ManifestError, ManifestRow

EMOTION_CLASSES: tuple[str, ...] = ("neu", "hap", "ang", "sad")
LABEL_MAP: dict[str, str] = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
SESSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)

_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?) - (?P<end>\d+(?:\.\d+)?)\]\t(?P<utt>Ses\d{2}[FM]_\S+)\t(?P<emo>\w+)\t"
    r"\[(?P<v>-?\d+(?:\.\d+)?), (?P<a>-?\d+(?:\.\d+)?), (?P<d>-?\d+(?:\.\d+)?)\]\s*$"
)


def parse_emo_evaluation(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Turn-level lines of one EmoEvaluation file; annotator lines and headers are ignored.

    Any line that starts with ``[`` must be a well-formed turn line, otherwise the file:line is
    reported (a silently skipped turn would shift the class balance unnoticed).
    """
    out: list[dict[str, object]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.startswith("["):
                continue
            m = _LINE.match(line.rstrip("\r\n"))
            if m is None:
                raise ManifestError(f"{path}:{lineno}: malformed turn line {line.strip()!r}")
            out.append(
                {
                    "utt": m["utt"],
                    "emotion": m["emo"],
                    "start": float(m["start"]),
                    "end": float(m["end"]),
                    "vad": [float(m["v"]), float(m["a"]), float(m["d"])],
                }
            )
    return out


def speaker_of(utt: str) -> str:
    """``Ses01F_impro01_M013`` -> ``Ses01M``: session plus the talker's gender."""
    suffix = utt.rsplit("_", 1)[-1]
    if suffix[:1] not in ("F", "M"):
        raise ManifestError(f"cannot read the speaker gender from utterance id {utt!r}")
    return utt[:5] + suffix[0]


def fold_splits(fold: int, valid_mode: Literal["speaker", "session"] = "speaker") -> dict[str, str]:
    """Speaker -> split for one leave-one-session-out fold (all ten speakers covered)."""
    if fold not in SESSIONS:
        raise ValueError(f"fold must be one of {SESSIONS}, got {fold!r}")
    if valid_mode not in ("speaker", "session"):
        raise ValueError(f"valid_mode must be 'speaker' or 'session', got {valid_mode!r}")
    valid_session = fold % 5 + 1
    splits: dict[str, str] = {}
    for s in SESSIONS:
        for g in ("F", "M"):
            spk = f"Ses{s:02d}{g}"
            if s == fold:
                splits[spk] = "test"
            elif s == valid_session and (valid_mode == "session" or g == "F"):
                splits[spk] = "valid"
            else:
                splits[spk] = "train"
    return splits


def read_iemocap(
    root: str | os.PathLike[str],
    fold: int = 1,
    valid_mode: Literal["speaker", "session"] = "speaker",
) -> list[ManifestRow]:
    """Emotion rows for all sessions present under ``root``, split by ``fold``."""
    root = Path(root)
    splits = fold_splits(fold, valid_mode)
    sessions = [s for s in SESSIONS if (root / f"Session{s}").is_dir()]
    if not sessions:
        raise ManifestError(f"no Session1..Session5 folders under {root}")
    rows: list[ManifestRow] = []
    for s in sessions:
        sess = root / f"Session{s}"
        evals = sorted((sess / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not evals:
            raise ManifestError(f"no EmoEvaluation/*.txt under {sess / 'dialog'}")
        for ev in evals:
            dialog = ev.stem
            for turn in parse_emo_evaluation(ev):
                raw = str(turn["emotion"])
                if raw not in LABEL_MAP:
                    continue
                utt = str(turn["utt"])
                wav = sess / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    raise ManifestError(f"{ev}: audio missing for {utt}: {wav}")
                speaker = speaker_of(utt)
                rows.append(
                    ManifestRow(
                        id=utt,
                        path=str(wav.absolute()),
                        duration_s=audio_duration(wav),
                        split=splits[speaker],
                        task="emotion",
                        speaker=speaker,
                        text=None,
                        label=LABEL_MAP[raw],
                        meta={
                            "corpus": "iemocap",
                            "session": s,
                            "dialog": dialog,
                            "raw_label": raw,
                            "vad": turn["vad"],
                            "improvised": "_impro" in dialog,
                            "fold": fold,
                        },
                    )
                )
    return rows
