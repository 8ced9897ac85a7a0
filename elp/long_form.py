"""Recordings longer than a model should read at once, cut at pauses into segments.

An ASR set reads a clip in one pass: the Whisper encoder's window is 30 s, and the shipped sets learnt
from clips of 1-30 s. A meeting or a voicemail is minutes long. :class:`LongFormSplitter` cuts it where
it is quietest, so each segment is an ordinary clip: the server runs the segments as rows of its batches
(several segments of one recording, and other requests, share a backbone pass) and the task joins their
answers. The same splitter is used by the evaluation code (``training.long_form``), so what is measured
is what is served.

Cuts are chosen from the frame levels the speech gate reads (25 ms frames every 10 ms, no model): the
quietest stretch (levels averaged over ``pause_s``) between ``min_segment_s`` and ``max_segment_s`` after
the previous cut. Speech without any pause is cut at its quietest moment, which may fall inside a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from elp.speech_activity import FRAME_S, HOP_S, frame_levels_dbfs

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class LongFormSplitter:
    """Clips longer than ``max_segment_s`` become segments of ``min_segment_s`` to ``max_segment_s``
    (the last one too), contiguous and covering the clip, each cut at the quietest ``pause_s`` window
    of its allowed range (the earliest of equally quiet ones)."""

    max_segment_s: float = 20.0
    min_segment_s: float = 5.0
    pause_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < 2 * self.min_segment_s <= self.max_segment_s:
            raise ValueError("a long-form splitter needs 0 < 2 x min_segment_s <= max_segment_s")
        if self.pause_s <= 0:
            raise ValueError("pause_s must be positive")

    def needs_split(self, num_samples: int, sample_rate: int) -> bool:
        return num_samples > round(self.max_segment_s * sample_rate)

    def spans(self, waveform: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
        """``[(start, end), ...]`` sample indices of the segments, in order; one span for a short clip."""
        import numpy as np

        total = int(np.asarray(waveform).reshape(-1).shape[0])
        longest, shortest = round(self.max_segment_s * sample_rate), round(self.min_segment_s * sample_rate)
        if total <= longest:
            return [(0, total)]
        hop, frame = max(1, round(HOP_S * sample_rate)), max(1, round(FRAME_S * sample_rate))
        quietness = _moving_average(frame_levels_dbfs(waveform, sample_rate), max(1, round(self.pause_s / HOP_S)))
        centres = np.arange(quietness.shape[0]) * hop + frame // 2  # each frame's centre sample
        spans, start = [], 0
        while total - start > longest:
            low, high = start + shortest, min(start + longest, total - shortest)
            allowed = np.flatnonzero((centres >= low) & (centres <= high))
            cut = int(centres[allowed[np.argmin(quietness[allowed])]]) if allowed.size else high
            spans.append((start, cut))
            start = cut
        spans.append((start, total))
        return spans


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Centred mean over ``width`` values (fewer at the edges), from one cumulative sum."""
    import numpy as np

    if values.size == 0:
        return values
    cumulative = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    index = np.arange(values.size)
    low = np.clip(index - width // 2, 0, values.size)
    high = np.clip(index - width // 2 + width, 0, values.size)
    return (cumulative[high] - cumulative[low]) / (high - low)


def join_texts(texts: list[str]) -> str:
    """The segments' transcripts as one (empty ones left out, single spaces)."""
    return " ".join(" ".join(text.split()) for text in texts if text and text.strip())
