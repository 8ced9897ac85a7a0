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

    def shortfall(self, active_s: float) -> str:
        """Why a clip with ``active_s`` active seconds was refused, for the ``no_speech`` message."""
        return f"{active_s:.2f} s of it is above {self.floor_dbfs:g} dBFS; this task needs {self.describe()}"


#: chunks (32 ms) a voice gate reads first, deciding there when they hold enough voice
PREFIX_CHUNKS = 32


@dataclass(frozen=True)
class VoiceGate(SpeechGate):
    """A clip passes when at least ``min_active_s`` of it is *voice*: 32 ms chunks that Silero's voice
    detector (``elp.voice_activity``) gives a speech probability of at least ``min_probability`` and that
    are louder than ``floor_dbfs`` (so digital silence never passes, whatever the detector says). Refuses
    what the level gate refuses and steady noise, hum, tones and ring tones besides (numbers in
    docs/results/speech-gate.md). Needs torch and silero-vad, imported on first use."""

    min_active_s: float = 0.1
    min_probability: float = 0.5

    def active_seconds(self, waveform: np.ndarray, sample_rate: int) -> float:
        """Seconds of voice chunks."""
        from elp.voice_activity import CHUNK, CHUNK_S, speech_probabilities

        probabilities = speech_probabilities(waveform, sample_rate)
        levels = chunk_levels_dbfs(waveform, CHUNK)
        return float(((probabilities >= self.min_probability) & (levels > self.floor_dbfs)).sum()) * CHUNK_S

    def has_speech(self, waveform: np.ndarray, sample_rate: int) -> bool:
        """Decided on the clip's first ~1 s when that holds enough voice (a spoken clip mostly does): the
        detector is causal, so those chunks score as they do in the whole clip (to float rounding, ~1e-7) and
        the answer is the same, at a fraction of the cost; otherwise on the whole clip."""
        import numpy as np

        from elp.voice_activity import CHUNK

        samples = np.asarray(waveform).reshape(-1)
        prefix = samples[: PREFIX_CHUNKS * CHUNK]
        if prefix.size < samples.size and self.active_seconds(prefix, sample_rate) >= self.min_active_s:
            return True
        return self.active_seconds(samples, sample_rate) >= self.min_active_s

    def describe(self) -> str:
        return (f"at least {self.min_active_s:g} s of voice (speech probability >= {self.min_probability:g}, "
                f"above {self.floor_dbfs:g} dBFS)")

    def shortfall(self, active_s: float) -> str:
        return f"{active_s:.2f} s of it sounds like a voice; this task needs {self.describe()}"


#: ``ELP_SPEECH_DETECTOR``'s values: the voice detector (the tasks' own gates), or the level rule in its place
DETECTORS = ("voice", "level")


def with_detector(gate: SpeechGate | None, detector: str) -> SpeechGate | None:
    """``gate`` as a deployment with ``ELP_SPEECH_DETECTOR=detector`` runs it: ``level`` puts the level rule
    (at its own minimum, the gate's floor) in place of a voice gate."""
    if detector not in DETECTORS:
        raise ValueError(f"speech detector must be one of {DETECTORS}, not {detector!r}")
    if detector == "level" and isinstance(gate, VoiceGate):
        return SpeechGate(floor_dbfs=gate.floor_dbfs)
    return gate


def evaluation_gate(gate: SpeechGate | None) -> SpeechGate | None:
    """The gate the evaluation code applies: ``gate`` under this process' ``ELP_SPEECH_DETECTOR`` (unset:
    voice), so an evaluation can follow a deployment that serves the level rule."""
    import os

    return with_detector(gate, os.environ.get("ELP_SPEECH_DETECTOR", "voice"))


def chunk_levels_dbfs(waveform: np.ndarray, chunk: int) -> np.ndarray:
    """Level (dBFS) of every ``chunk`` samples, the last one zero-padded, as the voice detector cuts them."""
    import numpy as np

    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    samples = np.pad(samples, (0, (-samples.size) % chunk)).reshape(-1, chunk)
    power = np.square(samples, dtype=np.float64).mean(axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-12))


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


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: the half-open index ranges of ``mask``'s stretches of True, in order (voiced
    chunks, pause frames)."""
    import numpy as np

    edges = np.flatnonzero(np.diff(np.concatenate(([0], np.asarray(mask).astype(np.int8), [0]))))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2], strict=True)]
