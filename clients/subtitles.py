"""Subtitles (SRT, WebVTT) from an answer's word times (``words``: ``/asr`` with asr-default or asr-whisper), and
RTTM (NIST's "who spoke when" lines, read by dscore, pyannote.metrics and md-eval) from ``/diarize``'s ``turns``.

    elp-client --subtitles srt asr talk.flac > talk.srt
    elp-client --rttm diarize meeting.flac > meeting.rttm

The cue rules live in ``elp.subtitles``, which the server's OpenAI-compatible route (``response_format=srt``)
uses too, so both give the same cues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from elp.diarization import rttm_lines
from elp.subtitles import FORMATS, Cue, cues, to_srt, to_webvtt

__all__ = ["FORMATS", "Cue", "cues", "to_rttm", "to_srt", "to_webvtt"]


def to_rttm(turns: Sequence[Mapping[str, Any]], recording: str) -> str:
    """One ``SPEAKER`` line per turn (``{start_s, end_s, speaker}``) of ``recording`` (its name, no spaces)."""
    name = "".join("_" if ch.isspace() else ch for ch in recording) or "recording"
    lines = rttm_lines(name, [(turn["start_s"], turn["end_s"], turn["speaker"]) for turn in turns])
    return "".join(line + "\n" for line in lines)
