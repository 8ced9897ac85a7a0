"""Word times of a CTC transcript: the most likely frame path of the clip's CTC log-probabilities that spells
exactly the given text (Viterbi forced alignment), read back as each word's first and last frame.

Why: a transcript with times is what subtitles, search and review need, and a CTC set has the times for free:
its log-probabilities are per 20 ms frame. The text is the beam search's answer (under the LM), which need not
be the best path, so the alignment is forced to that text rather than read off the argmax. Cost: one pass over
the frames with numpy over the ``2L + 1`` alignment states (a few ms for a 10 s clip).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLANK = 0
#: CTC emits a word's first letter a few frames after the word begins: served starts are moved this many 20 ms
#: frames earlier (never into the word before). Chosen on the word_times benchmark's validation sentences among
#: 0-6 frames by the median start error (0: 58 ms late; 3: 17 ms, 99% within 50 ms); on a real reader (Tux
#: Paint's phrases) starts were ~90 ms late before it. See the asr-default card.
ONSET_LEAD_FRAMES = 3


def _label_sequence(text: str, vocab: Sequence[str]) -> tuple[list[int], list[int]]:
    """The vocabulary ids that spell ``text`` (words joined by single spaces) and, per id, the index of the
    word it belongs to (-1 for a space). Characters outside the vocabulary are skipped."""
    index = {symbol: i for i, symbol in enumerate(vocab)}
    labels: list[int] = []
    owners: list[int] = []
    for word_index, word in enumerate(text.split()):
        if word_index and " " in index:
            labels.append(index[" "])
            owners.append(-1)
        for char in word:
            if char in index and index[char] != BLANK:
                labels.append(index[char])
                owners.append(word_index)
    return labels, owners


def _viterbi_states(log_probs: np.ndarray, labels: list[int]) -> np.ndarray | None:
    """The best state per frame (0..2L; odd states are labels) of a CTC path that spells ``labels``, or None
    when the clip has too few frames to spell them."""
    frames = log_probs.shape[0]
    states = 2 * len(labels) + 1
    symbols = np.full(states, BLANK, dtype=np.int64)
    symbols[1::2] = labels
    # a label may follow the label two states back directly (skipping the blank) unless it repeats it
    skip = np.zeros(states, dtype=bool)
    skip[3::2] = symbols[3::2] != symbols[1:-2:2]
    score = np.full(states, -np.inf)
    score[:2] = log_probs[0, symbols[:2]]
    back = np.zeros((frames, states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, frames):
        from_one = np.concatenate(([-np.inf], score[:-1]))
        from_two = np.where(skip, np.concatenate(([-np.inf, -np.inf], score[:-2])), -np.inf)
        candidates = np.stack([score, from_one, from_two])
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[t, symbols]
    end = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    if not np.isfinite(score[end]):
        return None
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = end
        end -= int(back[t, end])
    return path


def ctc_word_spans(log_probs: np.ndarray, text: str,
                   vocab: Sequence[str]) -> list[tuple[str, int, int, float]]:
    """``(word, first_frame, end_frame, confidence)`` of each word of ``text`` (end exclusive), from the clip's
    CTC log-probabilities ``(frames, vocab)``; empty when there are no words or too few frames to spell them.

    ``confidence``: the mean over the word's letters of each letter's highest posterior on the frames the
    alignment gives it. Chosen on validation among the letters' minimum, mean and geometric mean by how well it
    tells right words from wrong ones (ROC AUC on the corpus' validation clips: 0.82 against 0.78 and 0.81). A
    word the LM chose against the acoustics scores low."""
    words = text.split()
    labels, owners = _label_sequence(text, vocab)
    if not words or not labels or log_probs.shape[0] == 0:
        return []
    log_probs = np.asarray(log_probs, dtype=np.float64)
    path = _viterbi_states(log_probs, labels)
    if path is None:
        return []
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    best = np.full(len(labels), -np.inf)  # each letter's highest log-posterior on its frames
    for t, state in enumerate(path.tolist()):
        if state % 2 == 1:
            position = state // 2
            best[position] = max(best[position], log_probs[t, labels[position]])
            if owners[position] >= 0:
                first.setdefault(owners[position], t)
                last[owners[position]] = t
    letters: dict[int, list[float]] = {}
    for position, word in enumerate(owners):
        if word >= 0:
            letters.setdefault(word, []).append(float(np.exp(best[position])))
    return [(word, first[i], last[i] + 1, float(np.mean(letters[i]))) for i, word in enumerate(words) if i in first]


def with_onset_lead(spans: list[tuple[str, int, int, float]],
                    lead: int = ONSET_LEAD_FRAMES) -> list[tuple[str, int, int, float]]:
    """Spans whose starts come ``lead`` frames earlier (CTC's late first letter), never before frame 0 nor
    before the end of the word before."""
    led, previous_end = [], 0
    for word, first, end, confidence in spans:
        led.append((word, max(previous_end, first - lead), end, confidence))
        previous_end = end
    return led
