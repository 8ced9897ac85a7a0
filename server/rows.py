"""How a request's clips become the model's rows: whole, as a long recording's segments, or none at all.

A recording longer than its task's segments is cut at its pauses (``elp.long_form``), each segment a row
of its own; a clip without sound, for a task that answers silence without the model
(``TaskSpec.silence_answer``: ASR's "no words"), is no row at all. Both passes read every sample, so they
run off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from elp.long_form import LongFormSplitter
from elp.speech_activity import SpeechGate
from server.audio import DecodedAudio


@dataclass(frozen=True)
class RowPlan:
    """``rows`` to run: the clips whole (``spans`` None), a long recording's segments with sound (``spans``
    theirs; none for a silent recording), or none for a clip without sound (``silent``)."""

    rows: list[DecodedAudio]
    spans: list[tuple[float, float]] | None = None
    #: seconds of the clip that no row holds: a clip without a voice, a long recording's voiceless stretches
    unread_s: float = 0.0

    @property
    def silent(self) -> bool:
        """A clip without a voice, answered without the model (a silent long recording has ``spans`` [])."""
        return not self.rows and self.spans is None


def covered_samples(spans: list[tuple[int, int]]) -> int:
    """Samples that at least one span holds (diarization's windows overlap; segments do not)."""
    covered, reached = 0, 0
    for start, end in sorted(spans):
        covered += max(0, end - max(start, reached))
        reached = max(reached, end)
    return covered


async def plan_rows(clips: list[DecodedAudio], splitter: LongFormSplitter | None,
                    silence_gate: SpeechGate | None) -> RowPlan:
    """The rows of a request whose first clip is ``clips[0]`` (a task with a splitter or a silence gate
    takes one clip)."""
    clip = clips[0]
    rate = clip.sample_rate
    if splitter is not None and splitter.needs_split(len(clip.waveform), rate):
        spans = await asyncio.to_thread(splitter.spans, clip.waveform, rate)
        read = covered_samples(spans)
        return RowPlan([replace(clip, waveform=clip.waveform[a:b]) for a, b in spans],
                       [(a / rate, b / rate) for a, b in spans], unread_s=(len(clip.waveform) - read) / rate)
    if silence_gate is not None and not await asyncio.to_thread(silence_gate.has_speech, clip.waveform, rate):
        return RowPlan([], unread_s=clip.duration_s)
    return RowPlan(clips)
