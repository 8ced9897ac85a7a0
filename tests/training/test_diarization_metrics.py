"""DER as NIST's md-eval defines it, on cases worked out by hand."""

from __future__ import annotations

import pytest

from training.metrics import diarization_errors

REFERENCE = [(0.0, 10.0, "alice"), (11.0, 20.0, "bob")]


def test_a_perfect_answer_under_other_names_has_no_error() -> None:
    errors = diarization_errors(REFERENCE, [(0.0, 10.0, "speaker_2"), (11.0, 20.0, "speaker_1")])
    # 19 s of speech, less 0.25 s either side of the four boundaries that fall inside speech
    assert errors.scored_s == pytest.approx(18.0) and errors.der == 0.0


def test_one_speaker_for_everyone_is_confusion_plus_the_gap_as_false_alarm() -> None:
    errors = diarization_errors(REFERENCE, [(0.0, 20.0, "speaker_1")])
    assert errors.confusion_s == pytest.approx(8.5)  # bob's scored speech, mapped to no one
    assert errors.false_alarm_s == pytest.approx(0.5)  # 10.25-10.75: the scored part of the pause
    assert errors.missed_s == 0.0 and errors.der == pytest.approx(9.0 / 18.0)


def test_silence_answered_is_all_missed_and_the_collar_forgives_boundaries() -> None:
    assert diarization_errors(REFERENCE, []).der == pytest.approx(1.0)
    late = diarization_errors(REFERENCE, [(0.2, 10.0, "a"), (11.0, 19.8, "b")])
    assert late.der == 0.0  # 0.2 s late, within the collar
    later = diarization_errors(REFERENCE, [(1.25, 10.0, "a"), (11.0, 20.0, "b")])
    assert later.missed_s == pytest.approx(1.0) and later.der == pytest.approx(1.0 / 18.0)
    assert diarization_errors(REFERENCE, REFERENCE, collar_s=0.0).scored_s == pytest.approx(19.0)


def test_errors_add_over_recordings() -> None:
    one = diarization_errors(REFERENCE, [(0.0, 20.0, "x")])
    two = diarization_errors(REFERENCE, REFERENCE)
    total = one + two
    assert total.scored_s == pytest.approx(36.0) and total.der == pytest.approx(9.0 / 36.0)


@pytest.mark.parametrize("seed", range(6))
def test_der_equals_pyannote_metrics_on_random_answers(seed: int) -> None:
    """pyannote.metrics' DiarizationErrorRate on random references and answers with overlapping speakers (a
    speaker never overlaps itself: the two tools part there), with and without the collar (pyannote's ``collar``
    is the total width: 0.5 for 0.25 s either side)."""
    import numpy as np

    core = pytest.importorskip("pyannote.core")
    from pyannote.metrics.diarization import DiarizationErrorRate

    rng = np.random.default_rng(seed)

    def speaker_turns(name: str, count: int) -> list[tuple[float, float, str]]:
        turns, clock = [], 0.0
        for _ in range(count):
            clock += rng.uniform(0.5, 4.0)
            length = rng.uniform(0.3, 5.0)
            turns.append((round(clock, 2), round(clock + length, 2), name))
            clock += length
        return turns

    def annotation(turns: list[tuple[float, float, str]]) -> object:
        made = core.Annotation()
        for index, (start, end, speaker) in enumerate(turns):
            made[core.Segment(start, end), index] = speaker
        return made

    reference = sorted(speaker_turns("a", 5) + speaker_turns("b", 5) + speaker_turns("c", 4))
    hypothesis = sorted(speaker_turns("x", 6) + speaker_turns("y", 6))
    for collar_s in (0.0, 0.25):
        theirs = DiarizationErrorRate(collar=2 * collar_s, skip_overlap=False)(
            annotation(reference), annotation(hypothesis), detailed=True)
        mine = diarization_errors(reference, hypothesis, collar_s=collar_s)
        assert mine.der == pytest.approx(theirs["diarization error rate"], abs=1e-6)
        assert mine.confusion_s == pytest.approx(theirs["confusion"], abs=1e-6)
        assert mine.scored_s == pytest.approx(theirs["total"], abs=1e-6)
