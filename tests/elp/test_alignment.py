"""Word times of a CTC transcript: the forced alignment equals the best of every path that spells the text
(checked by enumeration), places peaky words where they are, and gives nothing when the text cannot fit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from elp.decoding.alignment import _label_sequence, ctc_word_spans, with_onset_lead
from elp.tasks.asr import CTCTranscriber, word_times

VOCAB = ["<blank>", " ", "a", "b"]


def collapse(path: tuple[int, ...]) -> list[int]:
    out, previous = [], -1
    for symbol in path:
        if symbol != previous and symbol != 0:
            out.append(symbol)
        previous = symbol
    return out


def brute_force_spans(log_probs: np.ndarray, text: str) -> list[tuple[str, int, int]]:
    """The best-scoring frame path that collapses to ``text``, by trying every path."""
    labels, owners = _label_sequence(text, VOCAB)
    best, best_path = -np.inf, None
    for path in itertools.product(range(len(VOCAB)), repeat=log_probs.shape[0]):
        if collapse(path) == labels:
            score = sum(log_probs[t, s] for t, s in enumerate(path))
            if score > best:
                best, best_path = score, path
    assert best_path is not None
    # read the path's label positions back: walk the collapsed symbols in order
    spans: dict[int, list[int]] = {}
    position, previous = -1, -1
    for t, symbol in enumerate(best_path):
        if symbol != 0 and symbol != previous:
            position += 1
        if symbol != 0 and owners[position] >= 0:
            spans.setdefault(owners[position], []).append(t)
        previous = symbol
    return [(word, spans[i][0], spans[i][-1] + 1) for i, word in enumerate(text.split())]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("text", ["ab", "a b", "aa", "b ab"])
def test_the_alignment_is_the_best_path_that_spells_the_text(seed: int, text: str) -> None:
    rng = np.random.default_rng(seed)
    log_probs = np.log(rng.dirichlet(np.ones(len(VOCAB)), size=7))
    spans = ctc_word_spans(log_probs, text, VOCAB)
    assert [span[:3] for span in spans] == brute_force_spans(log_probs, text)
    assert all(0.0 < span[3] <= 1.0 for span in spans)


def peaky(path: str, frames_per_symbol: int = 1) -> np.ndarray:
    """Log-probs that put 0.97 on one symbol per frame ('_' is the blank)."""
    ids = [0 if c == "_" else VOCAB.index(c) for c in path for _ in range(frames_per_symbol)]
    probs = np.full((len(ids), len(VOCAB)), 0.01)
    probs[np.arange(len(ids)), ids] = 0.97
    return np.log(probs)


def test_peaky_words_are_placed_where_they_are_said() -> None:
    log_probs = peaky("__aab___ _ba__")
    assert ctc_word_spans(log_probs, "ab ba", VOCAB) == [("ab", 2, 5, pytest.approx(0.97)),
                                                         ("ba", 10, 12, pytest.approx(0.97))]


def test_the_text_need_not_be_the_best_path() -> None:
    """The LM may answer other words than the argmax: they are aligned all the same."""
    spans = ctc_word_spans(peaky("__aab___ _ba__"), "bb a", VOCAB)
    assert [span[0] for span in spans] == ["bb", "a"]
    assert all(0 <= start < end <= 14 for _, start, end, _ in spans)
    assert spans[0][2] <= spans[1][1]
    # the acoustics said "aab", not "bb": the first word's letters are a guess against them
    assert spans[0][3] < 0.6 and spans[1][3] == pytest.approx(0.97)


def test_nothing_when_the_text_cannot_fit_or_is_empty() -> None:
    assert ctc_word_spans(peaky("ab"), "aa", VOCAB) == []  # a repeat needs a blank between: 3 frames
    assert ctc_word_spans(peaky("a_a"), "aa", VOCAB) == [("aa", 0, 3, pytest.approx(0.97))]
    assert ctc_word_spans(peaky("ab"), "", VOCAB) == []
    assert ctc_word_spans(np.zeros((0, len(VOCAB))), "a", VOCAB) == []


def test_characters_outside_the_vocabulary_are_skipped() -> None:
    spans = ctc_word_spans(peaky("_a_b_"), "a? zz b", VOCAB)
    assert [span[0] for span in spans] == ["a?", "b"]  # "zz" has nothing to align


def test_the_transcriber_answers_words_as_fractions_of_the_clip() -> None:
    transcriber = CTCTranscriber(VOCAB, None)
    answer = transcriber(torch.from_numpy(peaky("__ab__ _a__")).float())
    assert answer["text"] == "ab a"
    # starts come ONSET_LEAD_FRAMES (3) earlier than the first letter, never before 0 nor into the word before
    assert answer["words"] == [("ab", 0 / 11, 4 / 11, pytest.approx(0.97)), ("a", 5 / 11, 9 / 11, pytest.approx(0.97))]
    assert "words" not in CTCTranscriber(VOCAB, None, align=False)(torch.from_numpy(peaky("_a_")).float())


class _Row:
    def __init__(self, words: list[tuple[str, float, float, float]] | None) -> None:
        self.words = words


def test_word_times_follow_each_segment_of_a_long_recording() -> None:
    rows = [_Row([("hello", 0.1, 0.5, 0.91234)]), _Row([("there", 0.0, 0.25, 0.5), ("now", 0.5, 1.0, 1.0)])]
    assert word_times(rows, [(10.0, 12.0), (20.0, 24.0)]) == [
        {"word": "hello", "start_s": 10.2, "end_s": 11.0, "confidence": 0.912},
        {"word": "there", "start_s": 20.0, "end_s": 21.0, "confidence": 0.5},
        {"word": "now", "start_s": 22.0, "end_s": 24.0, "confidence": 1.0}]
    assert word_times([_Row(None)], [(0.0, 3.0)]) is None  # a decoder set, or silence answered without the model


def test_the_onset_lead_moves_starts_back_but_never_into_the_word_before() -> None:
    spans = [("a", 1, 4, 0.9), ("b", 5, 8, 0.8), ("c", 20, 22, 0.7)]
    assert with_onset_lead(spans, 3) == [("a", 0, 4, 0.9), ("b", 4, 8, 0.8), ("c", 17, 22, 0.7)]
    assert with_onset_lead(spans, 0) == spans
