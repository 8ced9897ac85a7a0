"""Is anything said in the clip at all? A level gate for the tasks whose answer means nothing without
speech: two silent clips embed alike, so speaker verification would call them one speaker (cosine 1.0)
at any threshold, and a silent enrolment would then "match" every silent upload.

One pass of frame energies, no model: cheap enough for the server's decoding stage, and the same rule in
the evaluation code, so a clip the server refuses is a clip the evaluation leaves out. It refuses digital
silence and near-silence (a muted microphone, the prompt packages' ``silence-N`` files); it is no voice
detector: steady noise or a tone passes (their frame-level spread overlaps dense speech's: measured on
the human suite's validation prompts, CHANGELOG 2026-12-04, fifteenth session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where frames are measured: the task registry (and the client) import this
    import numpy as np

#: analysis frame and hop (s): 25 ms frames every 10 ms, as speech front ends use
FRAME_S = 0.025
HOP_S = 0.010


@dataclass(frozen=True)
class SpeechGate:
    """A clip passes when at least ``min_active_s`` of it is *active*: 25 ms frames (every 10 ms)
    louder than ``floor_dbfs`` (RMS, dB relative to full scale)."""

    min_active_s: float = 0.3
    floor_dbfs: float = -55.0

    def active_seconds(self, waveform: np.ndarray, sample_rate: int) -> float:
        """Seconds of active frames (counted at the hop: frames overlap)."""
        levels = frame_levels_dbfs(waveform, sample_rate)
        return float((levels > self.floor_dbfs).sum()) * HOP_S

    def has_speech(self, waveform: np.ndarray, sample_rate: int) -> bool:
        return self.active_seconds(waveform, sample_rate) >= self.min_active_s

    def describe(self) -> str:
        """The rule in words, for error messages and docs."""
        return f"at least {self.min_active_s:g} s of sound above {self.floor_dbfs:g} dBFS"


def frame_levels_dbfs(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Level (dB relative to full scale: a full-scale square wave is 0 dBFS) of every 25 ms frame, hopped
    by 10 ms; a clip shorter than one frame is one frame."""
    import numpy as np

    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    frame, hop = max(1, round(FRAME_S * sample_rate)), max(1, round(HOP_S * sample_rate))
    if samples.size == 0:
        return np.zeros(0, dtype=np.float64)
    if samples.size < frame:
        samples = np.pad(samples, (0, frame - samples.size))
    # frame powers from one running sum of squares: one pass over the samples whatever the overlap
    cumulative = np.concatenate(([0.0], np.cumsum(np.square(samples, dtype=np.float64))))
    starts = np.arange(0, samples.size - frame + 1, hop)
    power = (cumulative[starts + frame] - cumulative[starts]) / frame
    return 10.0 * np.log10(np.maximum(power, 1e-12))
