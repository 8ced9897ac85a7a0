"""Recordings longer than a model should read at once, cut at pauses into segments.

An ASR set reads a clip in one pass: the Whisper encoder's window is 30 s, and the shipped sets learnt
from single utterances of 1-30 s. A meeting or a voicemail is minutes long. :class:`LongFormSplitter`
cuts it in its pauses, so each segment is an ordinary clip: the server runs the segments as rows of its
batches (several segments of one recording, and other requests, share a backbone pass) and the task
joins their answers. The same splitter is used by the evaluation code (``training.long_form``), so what
is measured is what is served.

Measured on validation recordings (docs/results/long-form.md): packing several utterances into one long
segment costs words (the shipped CTC set made 22% WER on clips sent one by one, 28-36% on segments of
10-30 s cut at their quietest moment), so the splitter cuts at *every* pause: frames (25 ms every 10 ms,
the speech gate's levels), smoothed over ``smooth_s``, within ``pause_margin_db`` of the quietest frame and at
least that much under the loudest one within ``context_s`` around them (the noise of a recording changes along
it), for at least ``min_pause_s``, make a pause, cut at its quietest frame. ``pause_detector="voice"`` finds
pauses with the voice detector instead (at least ``min_pause_s`` of frames whose 32 ms chunk has a speech
probability under ``pause_probability``, cut in the middle, so a pause full of noise as loud as the voice is
still one); measured and not chosen (better cuts on synthetic voices, worse for Whisper's decoder). A piece
shorter than ``min_segment_s`` joins a neighbour; a piece longer than ``max_segment_s`` (speech without a
pause) is cut at its quietest moment, which may fall inside a word.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from elp.speech_activity import (
    DETECTORS,
    FRAME_S,
    HOP_S,
    SpeechGate,
    VoiceGate,
    frame_levels_dbfs,
    true_runs,
    with_detector,
)

if TYPE_CHECKING:
    import numpy as np


#: a pause this long is cut near both its ends, not once in it: the stretch between is no one's words
LONG_PAUSE_S = 2.0
#: how much of a long pause each neighbouring segment keeps
PAUSE_PAD_S = 0.25
#: each pause detector's settings, chosen on validation recordings (docs/results/long-form.md)
PAUSES = {"voice": {"pause_detector": "voice", "min_pause_s": 0.10, "pause_probability": 0.5},
          "level": {"pause_detector": "level", "min_pause_s": 0.15, "pause_margin_db": 10.0}}


@dataclass(frozen=True)
class LongFormSplitter:
    """Recordings longer than ``max_segment_s`` become segments cut in their pauses, in order, covering
    them but for segments without a voice (``speech_gate``); every segment lasts at most ``max_segment_s``
    and, unless the recording's pauses allow no other way, at least ``min_segment_s``."""

    #: a deployment may turn it off (``ELP_MAX_LONG_FORM_S=0``: the task then reads clips whole)
    optional: ClassVar[bool] = True

    max_segment_s: float = 20.0
    min_segment_s: float = 1.0
    min_pause_s: float = 0.15
    pause_margin_db: float = 10.0
    smooth_s: float = 0.1
    context_s: float = 5.0
    #: what finds pauses: ``level`` (frames near the local floor, by the two numbers above) or ``voice``
    #: (frames whose 32 ms chunk the voice detector gives a speech probability under ``pause_probability``;
    #: measured in the seventeenth session and not chosen: docs/results/long-form.md)
    pause_detector: str = "level"
    pause_probability: float = 0.5
    #: segments this gate refuses (no voice: a muted stretch of a voicemail, hold music's hiss, a ring tone) are
    #: left out: no model reads them, and no set makes words of them (on 8 s of silence asr-whisper says "you",
    #: asr-default "he is so"); None keeps every segment
    speech_gate: SpeechGate | None = VoiceGate()

    def __post_init__(self) -> None:
        if not 0 < 2 * self.min_segment_s <= self.max_segment_s:
            raise ValueError("a long-form splitter needs 0 < 2 x min_segment_s <= max_segment_s")
        if min(self.min_pause_s, self.smooth_s, self.pause_margin_db, self.context_s) <= 0:
            raise ValueError("min_pause_s, smooth_s, pause_margin_db and context_s must be positive")
        if self.pause_detector not in DETECTORS or not 0 < self.pause_probability < 1:
            raise ValueError("pause_detector must be level or voice, pause_probability in (0, 1)")

    def for_detector(self, detector: str) -> LongFormSplitter:
        """This splitter as a deployment with ``ELP_SPEECH_DETECTOR=detector`` runs it: with ``level`` (no voice
        detector) the level gate and, in place of the voice detector's pauses, the level pauses at their
        validated settings; otherwise as it is."""
        pauses = PAUSES["level"] if detector == "level" and self.pause_detector == "voice" else {}
        return replace(self, speech_gate=with_detector(self.speech_gate, detector), **pauses)

    def needs_split(self, num_samples: int, sample_rate: int) -> bool:
        return num_samples > round(self.max_segment_s * sample_rate)

    def spans(self, waveform: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
        """``[(start, end), ...]`` sample indices of the segments with sound, in order (none for a silent
        recording); one span, the whole clip, for a clip that needs no split."""
        import numpy as np

        total = int(np.asarray(waveform).reshape(-1).shape[0])
        if not self.needs_split(total, sample_rate):
            return [(0, total)]
        hop, frame = max(1, round(HOP_S * sample_rate)), max(1, round(FRAME_S * sample_rate))
        levels = _moving_average(frame_levels_dbfs(waveform, sample_rate), max(1, round(self.smooth_s / HOP_S)))
        centres = np.arange(levels.shape[0]) * hop + frame // 2  # each frame's centre sample
        cuts = [int(centres[i]) for i in self._pause_frames(levels, self._in_pause(waveform, sample_rate, levels,
                                                                                    centres))]
        bounds = self._merged([0, *cuts, total], round(self.min_segment_s * sample_rate),
                              round(self.max_segment_s * sample_rate))
        spans: list[tuple[int, int]] = []
        for start, end in zip(bounds, bounds[1:], strict=False):
            spans += self._forced(start, end, levels, centres, sample_rate)
        gate, samples = self.speech_gate, np.asarray(waveform).reshape(-1)
        return [(start, end) for start, end in spans
                if gate is None or gate.has_speech(samples[start:end], sample_rate)]

    def _in_pause(self, waveform: np.ndarray, sample_rate: int, levels: np.ndarray,
                  centres: np.ndarray) -> np.ndarray:
        """Which frames may belong to a pause."""
        import numpy as np

        if self.pause_detector == "voice":  # no voice, however loud the frame (noise may be as loud as speech)
            from elp.voice_activity import CHUNK, speech_probabilities

            probabilities = speech_probabilities(waveform, sample_rate)
            return probabilities[np.minimum(centres // CHUNK, probabilities.size - 1)] < self.pause_probability
        # near the local noise floor and well under the local speech (both over ``context_s``: a recording's
        # noise changes along it), so a stretch without quiet frames has no pauses
        width = max(1, round(self.context_s / HOP_S)) | 1
        padded = np.pad(levels, width // 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, width)
        floor, loud = windows.min(axis=1), windows.max(axis=1)
        return levels < np.minimum(floor + self.pause_margin_db, loud - self.pause_margin_db)

    def _pause_frames(self, levels: np.ndarray, in_pause: np.ndarray) -> list[int]:
        """Where to cut each pause (a run of at least ``min_pause_s`` of ``in_pause`` frames): at its quietest
        frame, or, when the voice detector found it, at its middle (the detector's probability lags the voice
        by tens of ms at both ends, and a pause full of noise has no quiet frame); a pause
        of ``LONG_PAUSE_S`` or more is cut ``PAUSE_PAD_S`` inside either end instead, so the stretch
        between is a segment of its own (and left out when it has no sound)."""
        import numpy as np

        shortest, long_pause = max(1, round(self.min_pause_s / HOP_S)), round(LONG_PAUSE_S / HOP_S)
        pad = round(PAUSE_PAD_S / HOP_S)
        cuts: list[int] = []
        for start, end in true_runs(in_pause):
            if end - start < shortest:
                continue
            if end - start >= long_pause:  # the recording's own silent start or end too
                cuts += [k for k in (start + pad, end - pad) if 0 < k < levels.size - 1]
            elif start > 0 and end < levels.size:
                middle = (start + end) // 2 if self.pause_detector == "voice" else start + np.argmin(levels[start:end])
                cuts.append(int(middle))
        return cuts

    @staticmethod
    def _merged(bounds: list[int], shortest: int, longest: int) -> list[int]:
        """Drop cuts that leave a piece under ``shortest``, the shortest piece first, joining it to the
        neighbour that makes the shorter piece, unless that would pass ``longest``."""
        bounds = sorted(set(bounds))
        while len(bounds) > 2:
            lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
            for piece in sorted(range(len(lengths)), key=lengths.__getitem__):
                if lengths[piece] >= shortest:
                    return bounds
                best = min((k for k in (piece - 1, piece + 1) if 0 <= k < len(lengths)), key=lengths.__getitem__)
                if lengths[piece] + lengths[best] <= longest:
                    del bounds[max(piece, best)]  # the cut between the two
                    break
            else:
                return bounds
        return bounds

    def _forced(self, start: int, end: int, levels: np.ndarray, centres: np.ndarray,
                sample_rate: int) -> list[tuple[int, int]]:
        """``[start, end)`` in pieces of at most ``max_segment_s``, each cut at the quietest frame between
        a quarter of the maximum and the maximum after the previous cut."""
        import numpy as np

        longest = round(self.max_segment_s * sample_rate)
        shortest = longest // 4
        spans = []
        while end - start > longest:
            low, high = start + shortest, min(start + longest, end - shortest)
            allowed = np.flatnonzero((centres >= low) & (centres <= high))
            cut = int(centres[allowed[np.argmin(levels[allowed])]]) if allowed.size else high
            spans.append((start, cut))
            start = cut
        spans.append((start, end))
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
