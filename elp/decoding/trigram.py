"""The optional trigram level of the word LM: how it is built and how it is read.

Why: a bigram sees one word of history ("the" in both "turn on the ..." and "open the ..."), so on real read speech
the search keeps word pairs that are each likely and together wrong. General English trigrams (pocketsphinx's 1.67M,
``training.general_lm``) interpolated with the corpus text's own give each word two words of history.

Storage (tensors beside the bigram's, so the level travels in the set's safetensors file): the two-word histories
that have stored trigrams, sorted by ``before * V + last``, with their back-off weight and the index of their first
trigram; the trigrams' words, sorted within each history, with their log10 probability (8 bytes a trigram). A
history with no stored trigram backs off to the bigram with weight 1, so the search's state is the last word plus,
where one exists, the row of its two-word history (KenLM's state minimisation).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from elp.decoding.arpa import ArpaModel
from elp.errors import ConfigError

BOS, EOS = "<s>", "</s>"  # the sentence markers of every level (ARPA's)
Probability = Callable[[np.ndarray], np.ndarray]  # p(word | history) at bigram keys ``history * V + word``


@dataclass
class TrigramLevel:
    """The level as arrays (linear probabilities while building, log10 once stored)."""

    histories: np.ndarray  # (H,) int64 ``before * V + last``, sorted
    history_backoff: np.ndarray  # (H,) back-off weight of each history
    history_row: np.ndarray  # (T,) int64 row of each trigram's history
    words: np.ndarray  # (T,) int64, sorted within each history
    probability: np.ndarray  # (T,)

    @property
    def starts(self) -> np.ndarray:
        """Each history's first trigram (H + 1 entries): its trigrams are ``starts[h]:starts[h + 1]``."""
        return np.searchsorted(self.history_row, np.arange(len(self.histories) + 1))


def sorted_lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray, missing: float) -> np.ndarray:
    """``values`` at each query's position in ``sorted_keys``, ``missing`` where the key is absent (the bigram and
    trigram levels' tables are sorted key arrays)."""
    out = np.full(len(queries), missing, dtype=np.float64)
    if len(sorted_keys):
        at = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
        hit = sorted_keys[at] == queries
        out[hit] = values[at[hit]]
    return out


def read_trigram_level(histories: np.ndarray, backoff_log10: np.ndarray, starts: np.ndarray, words: np.ndarray,
                       log10: np.ndarray, num_words: int) -> tuple[np.ndarray, ...]:
    """The stored level as the searches read it (history keys, back-offs, starts, words, log10 p), refused unless
    every index is in range and the order is the one ``build`` writes: the compiled search reads these arrays
    without bounds checks, so a set whose tensors were edited must not reach it."""
    histories, starts, words = histories.astype(np.int64), starts.astype(np.int64), words.astype(np.int64)
    keys = histories[:, 0] * num_words + histories[:, 1]
    ordered = bool(np.all(np.diff(keys) > 0)) and bool(np.all(np.diff(starts) > 0))
    in_range = (histories.size == 0 or (histories.min() >= 0 and histories.max() < num_words)) and (
        words.size == 0 or (words.min() >= 0 and words.max() < num_words))
    if not (ordered and in_range and starts[0] == 0 and starts[-1] == len(words)):
        raise ConfigError("the language model's trigram level is not stored as build() stores it")
    rows = np.repeat(np.arange(len(keys)), np.diff(starts))
    if not np.all(np.diff(rows * num_words + words) > 0):
        raise ConfigError("the language model's trigrams are not sorted within their histories")
    # the words and their log10 p stay 4 bytes each (as stored): ~14 MB less in every process that decodes
    return keys, backoff_log10, starts, words.astype(np.int32), log10.astype(np.float32)


def ngram_counts(sentences: list[list[str]], index: Mapping[str, int], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys of the training text's n-grams of ``order`` (bigrams ``v * V + w``, trigrams ``(u * V + v) * V +
    w``; ``<s>`` and ``</s>`` around each sentence) and their counts."""
    size = len(index)
    grams: collections.Counter[tuple[str, ...]] = collections.Counter()
    for words in sentences:
        tokens = [BOS, *words, EOS]
        grams.update(zip(*(tokens[i:] for i in range(order)), strict=False))
    keys = np.array([functools.reduce(lambda key, word: key * size + index[word], gram, 0) for gram in grams],
                    dtype=np.int64)
    counts = np.array(list(grams.values()), dtype=np.float64)
    ordered = np.argsort(keys)
    return keys[ordered], counts[ordered]


def likeliest(log10: np.ndarray, history_log10: np.ndarray, at_start: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` n-grams likeliest by ``log10 + history_log10`` (a background level pruned to bound the
    set's size): p(history) p(word | history). ``<s>`` has no unigram: a history at a sentence start counts as
    10^-1 (once per ~10 words)."""
    joint = log10 + np.where(at_start, -1.0, history_log10)
    return np.argpartition(-joint, count)[:count]


def _corpus_probability(keys: np.ndarray, corpus_keys: np.ndarray, corpus_counts: np.ndarray, size: int,
                        corpus_bigram: Probability, discount: float) -> np.ndarray:
    """Absolute-discount p(word | before, last) of the training text at ``keys``, backing off to its bigram."""
    histories, inverse = np.unique(corpus_keys // size, return_inverse=True)
    history_counts = np.bincount(inverse, corpus_counts)
    followers = np.bincount(inverse)
    count = sorted_lookup(corpus_keys, corpus_counts, keys, 0.0)
    seen_count = sorted_lookup(histories, history_counts, keys // size, 0.0)
    seen_followers = sorted_lookup(histories, followers.astype(np.float64), keys // size, 0.0)
    lower = corpus_bigram(keys % (size * size))
    safe = np.maximum(seen_count, 1.0)
    return np.where(seen_count > 0, np.maximum(count - discount, 0.0) / safe + discount * seen_followers / safe * lower,
                    lower)


def _background_arrays(background: ArpaModel, index: Mapping[str, int], size: int) -> tuple[np.ndarray, ...]:
    """The background's trigrams (sorted keys, log10 p) and its two-word histories' back-offs (sorted, log10)."""
    known = [((index[u] * size + index[v]) * size + index[w], p) for (u, v, w), p in background.trigrams.items()
             if u in index and v in index and w in index]
    keys = np.array([k for k, _ in known], dtype=np.int64)
    log10 = np.array([p for _, p in known], dtype=np.float64)
    order = np.argsort(keys)
    backoffs = [(index[u] * size + index[v], b) for (u, v), b in background.bigram_backoffs.items()
                if u in index and v in index]
    history_keys = np.array([k for k, _ in backoffs], dtype=np.int64)
    history_log10 = np.array([b for _, b in backoffs], dtype=np.float64)
    history_order = np.argsort(history_keys)
    return keys[order], log10[order], history_keys[history_order], history_log10[history_order]


def build_trigram_level(sentences: list[list[str]], index: Mapping[str, int], *, corpus_bigram: Probability,
                        final_bigram: Probability, background: ArpaModel | None, background_bigram: Probability | None,
                        background_unigram: np.ndarray | None, interpolation: float, discount: float,
                        max_background_trigrams: int) -> TrigramLevel:
    """``interpolation * p_corpus(w | u, v) + (1 - interpolation) * p_background(w | u, v)`` at every trigram of the
    training text and every kept background trigram (the ``max_background_trigrams`` most frequent by p(u) p(v | u)
    p(w | u, v); 0 keeps all). Each history's back-off weight makes its distribution sum to one over the final
    bigram (``final_bigram``), as the bigram level's weights do over the unigram."""
    size = len(index)
    corpus_keys, corpus_counts = ngram_counts(sentences, index, 3)
    keys = corpus_keys
    background_side = None
    if background is not None and background.trigrams:
        assert background_bigram is not None and background_unigram is not None
        background_keys, background_log10, history_keys, history_log10 = _background_arrays(background, index, size)
        if max_background_trigrams and len(background_keys) > max_background_trigrams:
            before, pair = background_keys // (size * size), background_keys // size
            keep = np.sort(likeliest(background_log10 + np.log10(np.maximum(background_bigram(pair), 1e-30)),
                                     np.log10(np.maximum(background_unigram[before], 1e-30)), before == index[BOS],
                                     max_background_trigrams))
            background_keys, background_log10 = background_keys[keep], background_log10[keep]
        background_side = (background_keys, background_log10, history_keys, history_log10)
        keys = np.union1d(corpus_keys, background_keys)
    probability = _corpus_probability(keys, corpus_keys, corpus_counts, size, corpus_bigram, discount)
    if background_side is not None:
        background_keys, background_log10, history_keys, history_log10 = background_side
        explicit = sorted_lookup(background_keys, background_log10, keys, np.nan)
        history_backoff = 10.0 ** sorted_lookup(history_keys, history_log10, keys // size, 0.0)
        backed_off = history_backoff * background_bigram(keys % (size * size))
        background_probability = np.where(np.isnan(explicit), backed_off, 10.0 ** explicit)
        probability = interpolation * probability + (1 - interpolation) * background_probability
    histories, history_row = np.unique(keys // size, return_inverse=True)
    mass = np.bincount(history_row, probability, minlength=len(histories))
    lower_mass = np.bincount(history_row, final_bigram(keys % (size * size)), minlength=len(histories))
    backoff = np.maximum(1 - mass, 1e-12) / np.maximum(1 - lower_mass, 1e-12)
    return TrigramLevel(histories, backoff, history_row.astype(np.int64), keys % size, probability)
