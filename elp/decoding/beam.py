"""CTC prefix beam search with shallow fusion of the set's word LM (a bigram, or a trigram where the LM has the level).

Per frame only symbols above ``prune_logp`` (log-probability) are expanded, and a frame that is
almost surely blank only carries the beams forward: ~25 ms per corpus clip (~2 s) on one CPU core
with beam 32 (the stricter -8 / -0.0005 cost ~40 ms for 0.1 point of CER).
Words are scored by the LM as they complete (``alpha * ln p(word | history) + beta``); a partial
word that no vocabulary word starts with pays ``unk_score_offset`` at once, so hopeless spellings
leave the beam early. With the LM's ``lookahead`` a partial word is scored by the best word it can
still become (``alpha * ln max p(w | previous)`` over the words it starts) until it completes: the
prefix-tree look-ahead of token-passing decoders, which lets a beam of 32 keep the spellings that an
LM-blind beam needs several times the width to keep. The LM's ``temperature`` flattens the head's
probabilities before the search (pruning and blank skipping then act on the flattened ones).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from elp.decoding.bigram import BOS, EOS, WordBigramLM

LN10 = math.log(10)
NEG_INF = -math.inf
MAX_CACHED = 500_000

# (score of the completed words, (the word before the last, the last completed word), the partial word after it);
# the word before the last stays "" under a bigram LM, so histories that score the same share cache entries
_PrefixState = tuple[float, tuple[str, str], str]


class Hypothesis(NamedTuple):
    """One transcript of a search's final beam: its whole score (acoustic + fused LM, the sentence end scored) and
    its acoustic (CTC) log-probability alone."""

    text: str
    score: float
    acoustic: float


def distinct_best(ranked: Iterable[tuple[str, float, float]], count: int) -> list[Hypothesis]:
    """The first ``count`` distinct texts of a best-first ranking (two prefixes may spell one text: "a b" and
    "a b " before its last word ends), each at its best rank; an empty beam is one empty transcript."""
    seen: dict[str, Hypothesis] = {}
    for text, score, acoustic in ranked:
        if text not in seen:
            seen[text] = Hypothesis(text, score, acoustic)
            if len(seen) == count:
                break
    return list(seen.values()) or [Hypothesis("", 0.0, 0.0)]


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def _extend_beams(beams: dict[str, tuple[float, float]], candidates: list[tuple[int, float, str]],
                  space: int) -> dict[str, list[float]]:
    """One frame of the prefix search: every beam extended by every candidate symbol, the paths into each
    prefix log-summed (ending in blank, ending in a symbol).

    The innermost loop of the search, so ``_logaddexp`` is written out here: the same operations in the same
    order (a path adding -inf changes nothing and is skipped, as ``_logaddexp`` returns the other operand),
    hence the same floats and answers, at about half the interpreter time."""
    log1p, exp = math.log1p, math.exp
    nxt: dict[str, list[float]] = {}
    for prefix, (b, n) in beams.items():
        total = _logaddexp(b, n)
        last = prefix[-1] if prefix else ""
        for index, p, char in candidates:
            if index == 0:
                key, value, slot_index = prefix, total + p, 0
            elif index == space and last in ("", " "):
                key, value, slot_index = prefix, total + p, 1  # no leading or double spaces
            else:
                if last == char:  # a repeat without a blank collapses into the prefix...
                    value = n + p
                    slot = nxt.get(prefix)
                    if slot is None:
                        nxt[prefix] = [NEG_INF, value]
                    elif value != NEG_INF:
                        held = slot[1]
                        if held == NEG_INF:
                            slot[1] = value
                        else:
                            high, low = (held, value) if held > value else (value, held)
                            slot[1] = high + log1p(exp(low - high))
                    key, value, slot_index = prefix + char, b + p, 1  # ...or, after a blank, repeats
                else:
                    key, value, slot_index = prefix + char, total + p, 1
            slot = nxt.get(key)
            if slot is None:
                nxt[key] = [value, NEG_INF] if slot_index == 0 else [NEG_INF, value]
            elif value != NEG_INF:
                held = slot[slot_index]
                if held == NEG_INF:
                    slot[slot_index] = value
                else:
                    high, low = (held, value) if held > value else (value, held)
                    slot[slot_index] = high + log1p(exp(low - high))
    return nxt


def tempered(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """``log_softmax(log_probs / temperature)`` per frame (rows of ``(frames, symbols)``)."""
    scaled = log_probs / temperature
    top = scaled.max(axis=-1, keepdims=True)
    return scaled - (top + np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True)))


class CTCBeamDecoder:
    """Best transcript of CTC log-probabilities under a word LM; ``vocab[0]`` is the blank and the
    space symbol separates words."""

    def __init__(self, vocab: list[str], lm: WordBigramLM, prune_logp: float = -6.0,
                 blank_skip_logp: float = -0.002) -> None:
        self.vocab = vocab
        self.lm = lm
        self.alpha, self.beta = lm.config.alpha, lm.config.beta
        self.unk = lm.config.unk_score_offset
        self.beam_width = lm.config.beam_width
        self.lookahead = lm.config.lookahead
        self.temperature = lm.config.temperature
        self.trigrams = lm.config.num_trigrams > 0
        self.prune_logp = prune_logp
        self.blank_skip_logp = blank_skip_logp
        self._word_cache: dict[tuple[tuple[str, str], str], float] = {}
        self._span_cache: dict[str, tuple[int, int]] = {}
        self._lookahead_cache: dict[tuple[tuple[str, str], str], float] = {}

    # ------------------------------------------------------------------ LM scores (natural log)
    def _word_score(self, history: tuple[str, str], word: str) -> float:
        key = (history, word)
        if key not in self._word_cache:
            log10 = self.lm.log10_prob(history, word)
            self._word_cache[key] = (self.unk if log10 is None else self.alpha * log10 * LN10) + self.beta
        return self._word_cache[key]

    def _span(self, partial: str) -> tuple[int, int]:
        """The vocabulary words ``partial`` starts (:meth:`WordBigramLM.prefix_span`), cached."""
        if partial not in self._span_cache:
            self._span_cache[partial] = self.lm.prefix_span(partial)
        return self._span_cache[partial]

    def _lookahead_score(self, history: tuple[str, str], partial: str, span: tuple[int, int]) -> float:
        key = (history, partial)
        if key not in self._lookahead_cache:
            best = self.lm.best_log10_prob(history, span)
            self._lookahead_cache[key] = self.unk if best is None else self.alpha * best * LN10
        return self._lookahead_cache[key]

    def _partial_score(self, history: tuple[str, str], partial: str) -> float:
        """What a partial word adds to its prefix: nothing, the unknown-word penalty if no vocabulary
        word starts with it, or (with look-ahead) the best score of a word it can still become."""
        if not partial:
            return 0.0
        span = self._span(partial)
        if span[1] <= span[0]:
            return self.unk
        return self._lookahead_score(history, partial, span) if self.lookahead else 0.0

    def _extend(self, state: _PrefixState, char: str) -> _PrefixState:
        """The LM state of a prefix one character longer: a space completes the partial word."""
        completed, history, partial = state
        if char != " ":
            return completed, history, partial + char
        if not partial:
            return state
        return completed + self._word_score(history, partial), self._next_history(history, partial), ""

    def _next_history(self, history: tuple[str, str], word: str) -> tuple[str, str]:
        return (history[1] if self.trigrams else "", word)

    def _final_score(self, state: _PrefixState) -> float:
        """A whole transcript's LM score: its last word and the sentence end scored too."""
        completed, history, partial = state
        if partial:
            completed += self._word_score(history, partial)
            history = self._next_history(history, partial)
        log10 = self.lm.log10_prob(history, EOS)
        return completed + self.alpha * (log10 if log10 is not None else 0.0) * LN10

    def _bound_caches(self) -> None:
        """A long-lived decoder (a server's) meets new word pairs forever: start its caches afresh
        once they hold ``MAX_CACHED`` entries, so memory stays bounded."""
        for cache in (self._word_cache, self._span_cache, self._lookahead_cache):
            if len(cache) > MAX_CACHED:
                cache.clear()

    # ------------------------------------------------------------------ search
    def decode(self, log_probs: np.ndarray) -> str:
        return self.nbest(log_probs, 1)[0].text

    def nbest(self, log_probs: np.ndarray, count: int) -> list[Hypothesis]:
        """Up to ``count`` distinct transcripts of the final beam, best first (a stable sort: equals keep the
        beam's order, so the first is what ``decode`` answers), each with its whole and its acoustic score."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if self.temperature != 1.0:
            log_probs = tempered(log_probs, self.temperature)
        space = self.vocab.index(" ") if " " in self.vocab else -1
        beams: dict[str, tuple[float, float]] = {"": (0.0, NEG_INF)}  # prefix -> (ends in blank, ends in symbol)
        self._bound_caches()
        states: dict[str, _PrefixState] = {"": (0.0, ("", BOS), "")}  # every prefix ever in a beam or extended
        lm_cache: dict[str, float] = {"": 0.0}
        # per-frame facts read in a few array calls, as Python floats (numpy scalars are slow to add up)
        blanks = log_probs[:, 0].tolist()
        surely_blank = (log_probs[:, 0] > self.blank_skip_logp).tolist()
        above, best_symbols = log_probs > self.prune_logp, log_probs.argmax(axis=-1).tolist()
        for frame, blank in enumerate(blanks):
            if surely_blank[frame]:  # (almost) surely blank: every beam just continues
                beams = {p: (_logaddexp(b, n) + blank, NEG_INF) for p, (b, n) in beams.items()}
                continue
            indices = np.flatnonzero(above[frame]).tolist() or [best_symbols[frame]]
            row = log_probs[frame]
            candidates = [(index, float(row[index]), self.vocab[index]) for index in indices]  # once per frame
            nxt = _extend_beams(beams, candidates, space)
            scored = []
            for prefix, (b, n) in nxt.items():
                if prefix not in lm_cache:  # new prefixes are a beam's prefix plus one character
                    state = states[prefix] = self._extend(states[prefix[:-1]], prefix[-1])
                    lm_cache[prefix] = state[0] + self._partial_score(state[1], state[2])
                scored.append((_logaddexp(b, n) + lm_cache[prefix], prefix))
            beams = {prefix: (nxt[prefix][0], nxt[prefix][1]) for _, prefix in heapq.nlargest(self.beam_width, scored)}
        acoustic = {prefix: _logaddexp(*ends) for prefix, ends in beams.items()}
        scored = [(" ".join(p.split()), acoustic[p] + self._final_score(states[p]), acoustic[p]) for p in beams]
        return distinct_best(sorted(scored, key=lambda hypothesis: hypothesis[1], reverse=True), count)
