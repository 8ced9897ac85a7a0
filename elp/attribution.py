"""Who said what: a recording's words (``/asr``'s ``words``) given to the speakers of its turns (``/diarize``'s
``turns``), joined into one line per stretch of one speaker.

Two answers the server already gives, put together: the transcript's word times and the speakers' turns come from
the same recording's clock, so each word goes to the turn it overlaps most (or, in a pause between turns, the
nearest one). The Python client does it (``elp-client who-said-what meeting.flac --num-speakers 3``), and so does
the server for OpenAI's ``response_format=diarized_json``, with the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: a pause this long inside one speaker's words starts a new line
LINE_PAUSE_S = 2.0
#: and a line this long ends at the next word (a monologue read as one line is hard to follow)
MAX_LINE_S = 15.0


def speaker_of(word: Mapping[str, Any], turns: Sequence[Mapping[str, Any]]) -> str | None:
    """The speaker of the turn that overlaps ``word`` most; in a pause, the nearest turn's; None without turns."""
    start, end = float(word["start_s"]), float(word["end_s"])
    best, best_key = None, None
    for turn in turns:
        overlap = min(end, turn["end_s"]) - max(start, turn["start_s"])
        distance = max(turn["start_s"] - end, start - turn["end_s"], 0.0)
        key = (overlap > 0, overlap if overlap > 0 else -distance)
        if best_key is None or key > best_key:
            best, best_key = turn["speaker"], key
    return best


def attribute(words: Sequence[Mapping[str, Any]], turns: Sequence[Mapping[str, Any]],
              line_pause_s: float = LINE_PAUSE_S, max_line_s: float = MAX_LINE_S) -> list[dict[str, Any]]:
    """``[{speaker, start_s, end_s, text}, ...]``: consecutive words of one speaker joined, a new line where the
    speaker changes, after ``line_pause_s`` of silence or once a line has lasted ``max_line_s``."""
    lines: list[dict[str, Any]] = []
    for word in words:
        speaker = speaker_of(word, turns)
        last = lines[-1] if lines else None
        if (last is not None and last["speaker"] == speaker and word["start_s"] - last["end_s"] < line_pause_s
                and last["end_s"] - last["start_s"] < max_line_s):
            last["text"] += " " + word["word"]
            last["end_s"] = word["end_s"]
        else:
            lines.append({"speaker": speaker, "start_s": word["start_s"], "end_s": word["end_s"],
                          "text": word["word"]})
    return lines
