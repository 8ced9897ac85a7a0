"""Subtitle cues (SRT, WebVTT) from a transcript's word times, shared by the Python client and the server's
OpenAI-compatible route (``response_format=srt|vtt``).

Why: word times are what subtitles need, and a long recording's segments (up to 20 s) are too long to read as
one cue. Words are grouped into cues that end at a pause, at ``max_chars`` characters or at ``max_s`` seconds,
whichever comes first, as subtitle guidelines usually ask (about 42 characters a line, a few seconds a cue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def cues(words: Sequence[Mapping[str, Any]], max_chars: int = 42, max_s: float = 6.0,
         max_gap_s: float = 0.6) -> list[Cue]:
    """Consecutive words (``word``, ``start_s``, ``end_s``) joined into cues; a new cue starts after a pause longer
    than ``max_gap_s`` or when the next word would make the cue longer than ``max_chars`` characters or ``max_s``
    seconds."""
    out: list[Cue] = []
    current: list[Mapping[str, Any]] = []
    for word in words:
        if current:
            text = " ".join(w["word"] for w in [*current, word])
            if (word["start_s"] - current[-1]["end_s"] > max_gap_s or len(text) > max_chars
                    or word["end_s"] - current[0]["start_s"] > max_s):
                out.append(_cue(current))
                current = []
        current.append(word)
    if current:
        out.append(_cue(current))
    return out


def _cue(words: Sequence[Mapping[str, Any]]) -> Cue:
    return Cue(float(words[0]["start_s"]), float(words[-1]["end_s"]), " ".join(str(w["word"]) for w in words))


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt_text(timed: Sequence[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "".join(f"{i}\n{_clock(c.start_s, ',')} --> {_clock(c.end_s, ',')}\n{c.text}\n\n"
                   for i, c in enumerate(timed, 1))


def webvtt_text(timed: Sequence[Cue]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times."""
    return "WEBVTT\n\n" + "".join(f"{_clock(c.start_s, '.')} --> {_clock(c.end_s, '.')}\n{c.text}\n\n"
                                  for c in timed)


def to_srt(words: Sequence[Mapping[str, Any]], **options: Any) -> str:
    """SubRip subtitles of timed words (options: :func:`cues`')."""
    return srt_text(cues(words, **options))


def to_webvtt(words: Sequence[Mapping[str, Any]], **options: Any) -> str:
    """WebVTT subtitles of timed words (options: :func:`cues`')."""
    return webvtt_text(cues(words, **options))


FORMATS = {"srt": to_srt, "vtt": to_webvtt}
