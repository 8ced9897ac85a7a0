"""OpenAI's transcription and translation answers (``response_format`` json, text, srt, vtt, verbose_json) made from a
transcript-shaped task answer (``text``; ``words`` and ``segments`` with their times, as ``/asr`` gives them).

Why a module of its own: the shapes are OpenAI's contract, not this server's (seconds as ``start``/``end``, segment
fields from Whisper's decoding), and the routes stay a thin adapter. Fields that come from Whisper's own decoding
are filled with what this server measures, as docs/API.md says: ``avg_logprob`` is the mean log of the segment's
word confidences, ``compression_ratio`` is computed as Whisper computes it (text bytes / zlib-compressed bytes),
``tokens`` is empty (no BPE tokens behind a CTC transcript), ``temperature`` is 0 (one deterministic search), and
``no_speech_prob`` is 0 because a segment without a voice is never answered (the voice gate drops it).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from elp.attribution import attribute
from elp.subtitles import Cue, cues, srt_text, webvtt_text

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
GRANULARITIES = ("segment", "word")
#: a word confidence of 0 would make a log of minus infinity, which JSON cannot carry
_MIN_CONFIDENCE = 1e-6


def compression_ratio(text: str) -> float:
    """Whisper's repetition check: UTF-8 bytes over zlib-compressed bytes (0 for no text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _segments(answer: Mapping[str, Any], duration_s: float) -> list[tuple[float, float, str]]:
    """A long recording's segments, or the clip read whole as one; none for a clip answered with no words."""
    if answer.get("segments"):
        return [(float(s["start_s"]), float(s["end_s"]), str(s["text"])) for s in answer["segments"]]
    text = str(answer.get("text") or "")
    return [(0.0, float(duration_s), text)] if text else []


def _words_inside(words: Sequence[Mapping[str, Any]], start: float, end: float, last: bool) -> list[Mapping[str, Any]]:
    return [w for w in words if start <= w["start_s"] < end or (last and w["start_s"] >= end)]


def verbose_json(answer: Mapping[str, Any], duration_s: float, language_name: str,
                 granularities: Sequence[str], task: str = "transcribe") -> dict[str, Any]:
    """``verbose_json``: task (Whisper's: ``transcribe``, ``translate``), language, duration, text, usage, and the
    ``segments`` and/or ``words`` asked for (``segment`` when none are named, as OpenAI does). ``words`` is absent
    when the set gives no word times."""
    asked = set(granularities) or {"segment"}
    words = answer.get("words")
    body: dict[str, Any] = {"task": task, "language": language_name, "duration": round(float(duration_s), 3),
                            "text": str(answer.get("text") or ""), **usage(duration_s)}
    if "segment" in asked:
        spans = _segments(answer, duration_s)
        body["segments"] = [_segment(i, start, end, text, _words_inside(words or [], start, end, i == len(spans) - 1),
                                     words is not None)
                            for i, (start, end, text) in enumerate(spans)]
    if "word" in asked and words is not None:
        body["words"] = [{"word": w["word"], "start": w["start_s"], "end": w["end_s"]} for w in words]
    return body


def _segment(index: int, start: float, end: float, text: str, words: Sequence[Mapping[str, Any]],
             timed: bool) -> dict[str, Any]:
    logprob = (sum(math.log(max(float(w["confidence"]), _MIN_CONFIDENCE)) for w in words) / len(words)
               if timed and words else None)
    return {"id": index, "seek": round(start * 100), "start": round(start, 3), "end": round(end, 3), "text": text,
            "tokens": [], "temperature": 0.0, "avg_logprob": None if logprob is None else round(logprob, 4),
            "compression_ratio": round(compression_ratio(text), 4), "no_speech_prob": 0.0}


def sse_event(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event of OpenAI's transcription stream (``data: {...}`` and a blank line)."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def usage(duration_s: float) -> dict[str, Any]:
    """OpenAI's duration usage: the seconds of audio the answer read."""
    return {"usage": {"type": "duration", "seconds": round(float(duration_s), 3)}}


def subtitle_cues(answer: Mapping[str, Any], duration_s: float) -> list[Cue]:
    """Cues from the words' times (``elp.subtitles``' rules), else one per segment (a set without word times)."""
    if answer.get("words"):
        return cues(answer["words"])
    return [Cue(start, end, text) for start, end, text in _segments(answer, duration_s) if text]


def speaker_labels(speakers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """OpenAI's speaker labels for a diarization answer's ``speakers`` (in order of first turn): a known speaker's
    name where one matched (``name``), else ``A``, ``B``, ... by that order."""
    return {entry["speaker"]: str(entry.get("name") or _letters(index)) for index, entry in enumerate(speakers)}


def _letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def diarized_json(transcript: Mapping[str, Any], diarization: Mapping[str, Any], duration_s: float) -> dict[str, Any]:
    """``diarized_json``: the transcript's words given to the speakers' turns (``elp.attribution``: the turn a word
    overlaps most; a new segment where the speaker changes or after a pause), each segment labelled. A set without
    word times gives its segments (or the clip's text) as the units instead."""
    units = transcript.get("words") or [{"word": text, "start_s": start, "end_s": end}
                                        for start, end, text in _segments(transcript, duration_s)]
    labels = speaker_labels(diarization.get("speakers") or [])
    lines = attribute(units, diarization.get("turns") or [])
    return {"task": "transcribe", "duration": round(float(duration_s), 3), "text": str(transcript.get("text") or ""),
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{i}", "start": line["start_s"],
                          "end": line["end_s"], "speaker": labels.get(line["speaker"], "unknown"),
                          "text": line["text"]} for i, line in enumerate(lines)],
            **usage(duration_s)}


def shaped(answer: Mapping[str, Any], duration_s: float, response_format: str, language_name: str,
           granularities: Sequence[str], task: str = "transcribe") -> tuple[dict[str, Any] | str, str]:
    """(body, media type) of ``response_format``: a JSON object, or text (``text``, ``srt``, ``vtt``); ``task`` is
    ``verbose_json``'s."""
    if response_format == "json":
        return {"text": str(answer.get("text") or ""), **usage(duration_s)}, "application/json"
    if response_format == "verbose_json":
        return verbose_json(answer, duration_s, language_name, granularities, task), "application/json"
    if response_format == "text":
        return str(answer.get("text") or "") + "\n", "text/plain"
    timed = subtitle_cues(answer, duration_s)
    if response_format == "srt":
        return srt_text(timed), "text/plain"
    if response_format == "vtt":
        return webvtt_text(timed), "text/vtt"
    raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")
