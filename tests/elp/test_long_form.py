"""The long-form splitter: segments within bounds, contiguous, covering the clip, cut in the pauses. The
clips are noise bursts standing in for phrases, so the splitters here leave out segments by the level gate
(the default voice gate hears no voice in them; it is tested on espeak speech in tests/server/test_voice_gate.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from elp.long_form import LongFormSplitter, join_texts
from elp.speech_activity import SpeechGate

RATE = 16000


def level_splitter(**settings) -> LongFormSplitter:
    """The splitter as ``ELP_SPEECH_DETECTOR=level`` deploys it (level pauses and gate), with ``settings``."""
    return replace(LongFormSplitter().for_detector("level"), **settings)


def speech_with_pauses(bursts_s: list[float], pause_s: float = 0.6, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Noise bursts (stand-ins for phrases, each with a 4 Hz level ripple) separated by near-silent pauses;
    also returns the pauses' centres in seconds."""
    rng = np.random.default_rng(seed)
    parts, centres, clock = [], [], 0.0
    for k, burst in enumerate(bursts_s):
        t = np.arange(int(burst * RATE)) / RATE
        parts.append(0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * rng.standard_normal(t.size))
        clock += burst
        if k < len(bursts_s) - 1:
            parts.append(1e-4 * rng.standard_normal(int(pause_s * RATE)))
            centres.append(clock + pause_s / 2)
            clock += pause_s
    return np.concatenate(parts).astype(np.float32), centres


def test_a_clip_within_one_segment_is_not_cut() -> None:
    splitter = level_splitter(max_segment_s=20.0, min_segment_s=1.0)
    clip = np.zeros(20 * RATE, dtype=np.float32)
    assert not splitter.needs_split(clip.size, RATE)
    assert splitter.spans(clip, RATE) == [(0, clip.size)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_cover_the_clip_within_bounds_and_cut_in_pauses(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clip, pauses = speech_with_pauses(list(rng.uniform(1.5, 6.0, size=24)), seed=seed)
    spans = level_splitter(max_segment_s=20.0, min_segment_s=1.0).spans(clip, RATE)
    assert spans[0][0] == 0 and spans[-1][1] == clip.size
    assert all(end == next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))
    assert all(RATE <= end - start <= 20 * RATE for start, end in spans)
    # one segment per phrase: every pause (0.6 s) is cut, inside the pause, and nothing else is
    assert len(spans) == len(pauses) + 1
    for (_, cut), centre in zip(spans, pauses, strict=False):
        assert abs(cut / RATE - centre) < 0.3


def test_short_pieces_join_a_neighbour() -> None:
    """A 0.4 s phrase between pauses is not a segment of its own: it joins the shorter neighbour."""
    clip, pauses = speech_with_pauses([8.0, 3.0, 0.4, 5.0, 9.0])
    spans = level_splitter(max_segment_s=20.0, min_segment_s=1.0).spans(clip, RATE)
    assert len(spans) == 4 and all(end - start >= RATE for start, end in spans)
    cuts = [end / RATE for _, end in spans[:-1]]
    assert min(abs(c - pauses[1]) for c in cuts) > 0.3 or min(abs(c - pauses[2]) for c in cuts) > 0.3


def test_speech_without_pauses_is_cut_at_its_quietest_moment() -> None:
    t = np.arange(45 * RATE) / RATE
    level = 1.0 - 0.9 * np.exp(-((t - 17.0) ** 2) / 0.05)  # one dip at 17 s, otherwise loud throughout
    clip = (0.3 * level * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    spans = level_splitter(max_segment_s=20.0, min_segment_s=1.0).spans(clip, RATE)
    assert abs(spans[0][1] / RATE - 17.0) < 0.05  # the dip is no pause (too short), but the quietest moment
    assert spans[-1][1] == clip.size and all(5 * RATE <= e - s <= 20 * RATE for s, e in spans)


def test_digital_silence_and_an_odd_length_still_give_valid_segments() -> None:
    clip = np.zeros(61 * RATE + 7, dtype=np.float32)
    assert level_splitter().spans(clip, RATE) == []  # nothing to read: no segment at all
    spans = level_splitter(max_segment_s=20.0, min_segment_s=1.0, speech_gate=None).spans(clip, RATE)
    assert spans[-1][1] == clip.size and all(5 * RATE <= e - s <= 20 * RATE for s, e in spans)


def test_stretches_without_sound_are_left_out() -> None:
    """A voicemail with 40 s of a muted line in the middle: segments for the speech either side only."""
    before, _ = speech_with_pauses([3.0, 4.0, 2.5], seed=3)
    after, _ = speech_with_pauses([5.0, 2.0], seed=4)
    muted = np.zeros(40 * RATE, dtype=np.float32)
    clip = np.concatenate([before, muted, after])
    spans = level_splitter().spans(clip, RATE)
    assert spans and all(SpeechGate().has_speech(clip[s:e], RATE) for s, e in spans)
    inside = [(s, e) for s, e in spans if s >= before.size + RATE and e <= before.size + muted.size - RATE]
    assert inside == []  # no segment lies within the muted stretch
    sounding = np.flatnonzero(np.abs(clip) > 0.01)
    covered = np.zeros(clip.size, dtype=bool)
    for s, e in spans:
        covered[s:e] = True
    assert covered[sounding].all()  # every sound is in some segment


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        LongFormSplitter(max_segment_s=8.0, min_segment_s=5.0)
    with pytest.raises(ValueError):
        LongFormSplitter(min_pause_s=0.0)


def test_join_texts_drops_empty_segments_and_extra_spaces() -> None:
    assert join_texts(["hello  world ", "", "  ", "again"]) == "hello world again"
    assert join_texts([]) == ""


def test_only_one_clip_tasks_may_split_long_recordings_answer_silence_or_stream_partials() -> None:
    """The server reads only ``file`` for such tasks: a task with a second clip may declare none of them."""
    import dataclasses

    from elp.errors import ConfigError
    from elp.tasks.asr import ASR
    from elp.tasks.base import ExtraClip

    second = (ExtraClip("reference", "another clip"),)
    for fields in ({"silence_answer": None}, {"long_form": None}, {"long_form": None, "silence_answer": None}):
        with pytest.raises(ConfigError, match="one clip"):
            dataclasses.replace(ASR, extra_clips=second, **fields)
    plain = dataclasses.replace(ASR, extra_clips=second, long_form=None, silence_answer=None, partial_answers=False)
    assert plain.extra_clips == second and not plain.one_clip


def test_a_level_deployment_gets_level_pauses_and_gate_and_a_voice_one_the_splitter_as_it_is() -> None:
    from elp.long_form import PAUSES
    from elp.speech_activity import VoiceGate

    voice = LongFormSplitter(pause_detector="voice", min_pause_s=0.1, max_segment_s=12.0)
    level = voice.for_detector("level")
    assert level.pause_detector == "level" and level.min_pause_s == PAUSES["level"]["min_pause_s"]
    assert level.speech_gate == SpeechGate() and level.max_segment_s == 12.0  # the rest as it was
    assert voice.for_detector("voice") == voice
    custom = LongFormSplitter(pause_detector="level", min_pause_s=0.3, speech_gate=VoiceGate())
    assert custom.for_detector("voice") == custom  # a level splitter never gains the voice detector's pauses
    assert custom.for_detector("level").min_pause_s == 0.3 and custom.for_detector("level").speech_gate == SpeechGate()
