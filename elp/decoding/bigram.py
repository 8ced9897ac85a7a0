"""A word bigram language model, optionally with a trigram level, stored as tensors (so it travels inside the
set's safetensors file).

Words are one UTF-8 blob joined by newlines; unigrams carry log10 probability and back-off weight,
bigrams are (history, word) index pairs with their log10 probability: ARPA semantics, no pickle. The trigram
level (:mod:`elp.decoding.trigram`) adds two-word histories with their back-off weights and the trigrams under
them; sets saved without it load and decode as before.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from elp.decoding.arpa import ArpaModel
from elp.decoding.config import LanguageModelConfig
from elp.decoding.trigram import (
    BOS,
    EOS,
    TrigramLevel,
    build_trigram_level,
    likeliest,
    ngram_counts,
    read_trigram_level,
    sorted_lookup,
)
from elp.errors import ConfigError
from elp.string_table import join_strings, split_strings

#: spans whose best unigram is kept (a server's decoder meets new prefixes forever: bounded)
MAX_CACHED_SPANS = 200_000


def _corpus_unigram(sentences: list[list[str]], general: dict[str, float], background_unigram: Mapping[str, float],
                    mix: float, end_probability: float) -> tuple[list[str], np.ndarray]:
    """The model's words (``<s>``, ``</s>``, then the vocabulary sorted) and the corpus side's unigram:
    training counts mixed with ``general`` (weight ``1 - mix``), ``</s>`` at its fixed share."""
    counts = collections.Counter(word for words in sentences for word in words)
    total = sum(counts.values()) or 1
    general_total = sum(general.values()) or 1.0
    weight = mix if general else 1.0
    vocab = sorted(set(counts) | set(general) | (set(background_unigram) - {EOS}))
    unigram = np.zeros(len(vocab) + 2)
    unigram[2:] = np.maximum([weight * counts[w] / total + (1 - weight) * general.get(w, 0.0) / general_total
                              for w in vocab], 1e-9)
    unigram[2:] *= (1 - end_probability) / unigram[2:].sum()
    unigram[1] = end_probability
    return [BOS, EOS, *vocab], unigram


@dataclass
class _CorpusPairs:
    """The training text's bigram counts, sorted by key (``history * size + word``)."""

    keys: np.ndarray
    counts: np.ndarray
    history_counts: np.ndarray
    backoff: np.ndarray
    size: int

    @classmethod
    def count(cls, sentences: list[list[str]], index: Mapping[str, int], discount: float) -> _CorpusPairs:
        size = len(index)
        keys, counts = ngram_counts(sentences, index, 2)
        history_counts = np.bincount(keys // size, counts, minlength=size)
        followers = np.bincount(keys // size, minlength=size)
        backoff = np.where(history_counts > 0, discount * followers / np.maximum(history_counts, 1), 1.0)
        return cls(keys, counts, history_counts, backoff, size)

    def probability(self, keys: np.ndarray, unigram: np.ndarray, discount: float) -> np.ndarray:
        """Absolute-discount p(word | history) at ``keys``, backing off to ``unigram``."""
        history, word = keys // self.size, keys % self.size
        count = sorted_lookup(self.keys, self.counts, keys, 0.0)
        seen = self.history_counts[history] > 0
        return np.where(seen, np.maximum(count - discount, 0.0) / np.maximum(self.history_counts[history], 1)
                        + self.backoff[history] * unigram[word], unigram[word])


@dataclass
class _BackgroundSide:
    """A background ARPA model on the model's word index: its unigram, back-off weights and the pairs
    kept (the most frequent ``max_bigrams`` by p(v) p(w | v) when bounded), sorted by key."""

    unigram: np.ndarray
    backoff: np.ndarray
    keys: np.ndarray
    log10: np.ndarray
    size: int

    @classmethod
    def read(cls, background: ArpaModel, background_unigram: Mapping[str, float], index: Mapping[str, int],
             max_bigrams: int) -> _BackgroundSide:
        size = len(index)
        unigram = np.zeros(size)
        for w, p in background_unigram.items():
            if w in index:
                unigram[index[w]] = p
        unigram /= unigram.sum()
        backoff = np.ones(size)
        for w, (_, b) in background.unigrams.items():
            if w in index:
                backoff[index[w]] = 10.0 ** b
        known = [(index[v] * size + index[w], p) for (v, w), p in background.bigrams.items()
                 if v in index and w in index]
        keys = np.array([k for k, _ in known], dtype=np.int64)
        log10 = np.array([p for _, p in known])
        if max_bigrams and len(keys) > max_bigrams:
            history = keys // size
            keep = likeliest(log10, np.log10(np.maximum(unigram[history], 1e-30)), history == 0, max_bigrams)
            keys, log10 = keys[keep], log10[keep]
        order = np.argsort(keys)
        return cls(unigram, backoff, keys[order], log10[order], size)

    def probability(self, keys: np.ndarray) -> np.ndarray:
        """p(word | history) at ``keys``: the stored pair's, or back-off x unigram."""
        history, word = keys // self.size, keys % self.size
        explicit = sorted_lookup(self.keys, self.log10, keys, np.nan)
        return np.where(np.isnan(explicit), self.backoff[history] * self.unigram[word], 10.0 ** explicit)


def _bigram_backoff(keys: np.ndarray, probability: np.ndarray, unigram: np.ndarray, size: int) -> np.ndarray:
    """Each history's back-off weight (linear) so that its stored pairs plus the backed-off unigram sum to one."""
    history, word = keys // size, keys % size
    mass = np.bincount(history, probability, minlength=size)
    unigram_mass = np.bincount(history, unigram[word], minlength=size)
    has_pairs = np.bincount(history, minlength=size) > 0
    return np.where(has_pairs, np.maximum(1 - mass, 1e-12) / np.maximum(1 - unigram_mass, 1e-12), 1.0)


class WordBigramLM(nn.Module):
    """Tensor storage for the LM plus cached Python lookups for the decoder."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("words_utf8", torch.zeros(config.num_word_bytes, dtype=torch.uint8))
        self.register_buffer("unigram_log10", torch.zeros(config.num_words, 2))
        self.register_buffer("bigram_index", torch.zeros(config.num_bigrams, 2, dtype=torch.int32))
        self.register_buffer("bigram_log10", torch.zeros(config.num_bigrams))
        if config.num_trigrams:  # only then: a bigram set's tensors stay exactly what they were
            self.register_buffer("trigram_histories", torch.zeros(config.num_trigram_histories, 2, dtype=torch.int32))
            self.register_buffer("trigram_history_backoff_log10", torch.zeros(config.num_trigram_histories))
            self.register_buffer("trigram_history_start", torch.zeros(config.num_trigram_histories + 1,
                                                                      dtype=torch.int32))
            self.register_buffer("trigram_word", torch.zeros(config.num_trigrams, dtype=torch.int32))
            self.register_buffer("trigram_log10", torch.zeros(config.num_trigrams))
        self._arrays: tuple[list[str], dict[str, int], np.ndarray, np.ndarray, np.ndarray] | None = None
        self._trigram_arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._vocabulary_sorted = True
        # best unigram of a word span: the same for every history, and a max over thousands of words for a
        # short prefix; bounded like the decoder's caches
        self._best_unigram: dict[tuple[int, int], float] = {}

    @classmethod
    def build(cls, texts: Iterable[str], general: Mapping[str, float] | None = None, *,
              background: ArpaModel | None = None, interpolation: float = 0.5,
              max_background_bigrams: int = 0, discount: float = 0.75, mix: float = 0.5,
              end_probability: float = 0.08, order: int = 2, max_background_trigrams: int = 0,
              **decoder: float) -> WordBigramLM:
        """Interpolated absolute-discount bigram over ``texts`` (training transcripts), its unigram
        mixed with ``general`` word frequencies (an English prior, e.g. from ``wordfreq``) so words
        never seen in training still get a probability.

        With a ``background`` ARPA model (general English) the result is the linear interpolation
        ``interpolation * p_corpus(w | v) + (1 - interpolation) * p_background(w | v)``, exact for every
        stored pair and with back-off weights that keep each history's distribution normalised;
        ``max_background_bigrams`` keeps only the background's most frequent pairs (by p(v) p(w | v))
        to bound the set's size. ``order=3`` adds the trigram level (:func:`build_trigram_level`): the text's
        triples and the background's (its ``max_background_trigrams`` most frequent, 0: all), interpolated with
        the same weight."""
        if not 0.0 <= interpolation <= 1.0:
            raise ConfigError("interpolation must be in [0, 1]")
        if order not in (2, 3):
            raise ConfigError("order must be 2 or 3")
        sentences = [text.split() for text in texts if text.split()]
        background_unigram: dict[str, float] = {}
        if background is not None:
            background_unigram = {w: 10.0 ** p for w, (p, _) in background.unigrams.items() if w != BOS}
            if general is None:
                general = {w: p for w, p in background_unigram.items() if w != EOS}
        words, unigram = _corpus_unigram(sentences, dict(general or {}), background_unigram, mix, end_probability)
        index = {w: i for i, w in enumerate(words)}
        corpus = _CorpusPairs.count(sentences, index, discount)
        keys, probability, stored_unigram = corpus.keys, corpus.probability(corpus.keys, unigram, discount), unigram
        side = None
        if background is not None:
            side = _BackgroundSide.read(background, background_unigram, index, max_background_bigrams)
            keys = np.union1d(corpus.keys, side.keys)
            probability = (interpolation * corpus.probability(keys, unigram, discount)
                           + (1 - interpolation) * side.probability(keys))
            stored_unigram = interpolation * unigram + (1 - interpolation) * side.unigram
            stored_unigram /= stored_unigram.sum()
        backoff, trigrams = _bigram_backoff(keys, probability, stored_unigram, len(words)), None
        if order == 3:

            def final_bigram(queries: np.ndarray) -> np.ndarray:
                explicit = sorted_lookup(keys, probability, queries, np.nan)
                backed_off = backoff[queries // len(words)] * stored_unigram[queries % len(words)]
                return np.where(np.isnan(explicit), backed_off, explicit)

            trigrams = build_trigram_level(
                sentences, index, corpus_bigram=lambda q: corpus.probability(q, unigram, discount),
                final_bigram=final_bigram, background=background,
                background_bigram=side.probability if side is not None else None,
                background_unigram=side.unigram if side is not None else None, interpolation=interpolation,
                discount=discount, max_background_trigrams=max_background_trigrams)
        return cls._packed(words, keys, probability, stored_unigram, backoff, decoder, trigrams)

    @classmethod
    def _packed(cls, words: list[str], keys: np.ndarray, probability: np.ndarray, unigram: np.ndarray,
                backoff: np.ndarray, decoder: Mapping[str, float],
                trigrams: TrigramLevel | None = None) -> WordBigramLM:
        """The model's tensors from its bigram keys (``history * size + word``), their probabilities, the unigram,
        each history's back-off weight (:func:`_bigram_backoff`: 1 where it has no pairs) and the trigram level."""
        size = len(words)
        history, word = keys // size, keys % size
        blob = join_strings(words)
        levels = {} if trigrams is None else {"num_trigrams": len(trigrams.words),
                                               "num_trigram_histories": len(trigrams.histories)}
        config = LanguageModelConfig(num_words=size, num_word_bytes=len(blob), num_bigrams=len(keys), **levels,
                                     **decoder)
        model = cls(config)
        if trigrams is not None and len(trigrams.words):
            model.trigram_histories.copy_(torch.from_numpy(
                np.stack([trigrams.histories // size, trigrams.histories % size], axis=1).astype(np.int32)))
            model.trigram_history_backoff_log10.copy_(torch.from_numpy(np.log10(trigrams.history_backoff)))
            model.trigram_history_start.copy_(torch.from_numpy(trigrams.starts.astype(np.int32)))
            model.trigram_word.copy_(torch.from_numpy(trigrams.words.astype(np.int32)))
            model.trigram_log10.copy_(torch.from_numpy(np.log10(trigrams.probability)))
        model.words_utf8.copy_(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
        table = np.stack([np.log10(np.maximum(unigram, 1e-99)), np.log10(backoff)], axis=1)
        table[0, 0] = -99.0
        model.unigram_log10.copy_(torch.from_numpy(table))
        if len(keys):
            model.bigram_index.copy_(torch.from_numpy(np.stack([history, word], axis=1).astype(np.int32)))
            model.bigram_log10.copy_(torch.from_numpy(np.log10(probability)))
        return model

    def vocabulary(self) -> list[str]:
        """Every word the LM knows, the sentence markers first."""
        return self._lookup()[0]

    def _lookup(self) -> tuple[list[str], dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
        """(words, word -> index, unigram table, sorted bigram keys history * V + word, their log10 p),
        built once: sorted arrays instead of a dict keep a million-pair LM at ~16 bytes a pair in memory."""
        if self._arrays is None:
            words = split_strings(bytes(self.words_utf8.cpu().numpy()), self.config.num_words)
            self._vocabulary_sorted = words[2:] == sorted(words[2:])
            pairs = self.bigram_index.cpu().numpy().astype(np.int64)
            keys = pairs[:, 0] * len(words) + pairs[:, 1]
            order = np.argsort(keys, kind="stable")
            self._arrays = (words, {w: i for i, w in enumerate(words)},
                            self.unigram_log10.cpu().double().numpy(), keys[order],
                            self.bigram_log10.cpu().double().numpy()[order])
        return self._arrays

    def trigram_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(two-word history keys ``before * V + last`` sorted, their log10 back-off, each history's first trigram
        (one more entry than histories), the trigrams' words sorted within a history, their log10 p), built and
        checked once (:func:`read_trigram_level`); empty arrays for a bigram model."""
        if self._trigram_arrays is None:
            if not self.config.num_trigrams:
                self._trigram_arrays = (np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64),
                                        np.zeros(0, np.int32), np.zeros(0, np.float32))  # the stored level's types
            else:
                self._trigram_arrays = read_trigram_level(
                    self.trigram_histories.cpu().numpy(), self.trigram_history_backoff_log10.cpu().double().numpy(),
                    self.trigram_history_start.cpu().numpy(), self.trigram_word.cpu().numpy(),
                    self.trigram_log10.cpu().numpy(), self.config.num_words)
        return self._trigram_arrays

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._arrays = None
        self._trigram_arrays = None
        self._best_unigram = {}
        super()._load_from_state_dict(*args, **kwargs)

    def _trigram_history(self, before: str, last: int) -> int:
        """The row of the two-word history (``before``, word ``last``), or -1 when it has no trigrams."""
        u = self._lookup()[1].get(before)
        history_keys = self.trigram_arrays()[0]
        if u is None or not len(history_keys):
            return -1
        key = u * self.config.num_words + last
        at = int(history_keys.searchsorted(key))
        return at if at < len(history_keys) and history_keys[at] == key else -1

    def log10_prob(self, history: str | tuple[str, str], word: str) -> float | None:
        """ARPA lookup with back-off; None for a word outside the vocabulary. ``history`` is the previous
        word, or (the word before it, the previous word) for the trigram level where the model has one."""
        before, last = history if isinstance(history, tuple) else ("", history)
        words, index, unigram, keys, values = self._lookup()
        w = index.get(word)
        if w is None:
            return None
        v = index.get(last)
        if v is None:
            return float(unigram[w, 0])
        key = v * len(words) + w
        at = int(keys.searchsorted(key))
        bigram = float(values[at]) if at < len(keys) and keys[at] == key else float(unigram[v, 1] + unigram[w, 0])
        row = self._trigram_history(before, v) if before else -1
        if row < 0:
            return bigram
        _, backoff, starts, trigram_words, trigram_values = self.trigram_arrays()
        lo, hi = starts[row], starts[row + 1]
        at = lo + int(trigram_words[lo:hi].searchsorted(w))
        return float(trigram_values[at]) if at < hi and trigram_words[at] == w else float(backoff[row]) + bigram

    def sorted_vocabulary(self) -> list[str]:
        """:meth:`vocabulary`, checked to be sorted after the two sentence markers (as ``build`` stores it): the
        look-ahead finds a partial word's words as a contiguous span of it."""
        words = self._lookup()[0]
        if not self._vocabulary_sorted:
            raise ConfigError("LM look-ahead needs the vocabulary stored sorted, as build() stores it")
        return words

    def prefix_span(self, prefix: str) -> tuple[int, int]:
        """Word indices ``[lo, hi)`` of the vocabulary words that start with ``prefix`` (empty if none)."""
        words = self.sorted_vocabulary()
        if not prefix:
            return 2, len(words)
        lo = bisect.bisect_left(words, prefix, 2)
        if lo == len(words) or not words[lo].startswith(prefix):
            return lo, lo  # no word starts with it (the common case for a beam's hopeless spellings)
        successor = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return lo, bisect.bisect_left(words, successor, lo)

    def best_log10_prob(self, history: str | tuple[str, str], span: tuple[int, int]) -> float | None:
        """Highest ``log10 p(w | history)`` of any word ``w`` in ``span`` (a :meth:`prefix_span`), with
        back-off: the LM look-ahead of a partial word. None for an empty span. With a two-word ``history`` and
        a trigram level: the best stored trigram of the span or the back-off weight plus the bigram's best (an
        upper bound where the bigram's best word has a trigram of its own)."""
        before, last = history if isinstance(history, tuple) else ("", history)
        bigram = self._best_bigram_log10_prob(last, span)
        v = self._lookup()[1].get(last)
        row = self._trigram_history(before, v) if before and v is not None else -1
        if bigram is None or row < 0:
            return bigram
        _, backoff, starts, trigram_words, trigram_values = self.trigram_arrays()
        first, stop = starts[row], starts[row + 1]
        lo, hi = first + trigram_words[first:stop].searchsorted(span)
        best = float(backoff[row]) + bigram
        return max(best, float(trigram_values[lo:hi].max())) if hi > lo else best

    def _best_bigram_log10_prob(self, history: str, span: tuple[int, int]) -> float | None:
        lo, hi = span
        if hi <= lo:
            return None
        words, index, unigram, keys, values = self._lookup()
        best_unigram = self._best_unigram.get(span)
        if best_unigram is None:
            if len(self._best_unigram) > MAX_CACHED_SPANS:
                self._best_unigram.clear()
            best_unigram = self._best_unigram[span] = float(unigram[lo:hi, 0].max())
        v = index.get(history)
        if v is None:
            return best_unigram
        base = v * len(words)
        first, last = keys.searchsorted((base + lo, base + hi))  # the method: no numpy dispatch wrapper
        best = float(unigram[v, 1]) + best_unigram
        return max(best, float(values[first:last].max())) if last > first else best

    def sentence_log10_prob(self, words: list[str]) -> float:
        """Total log10 probability of a sentence, ``</s>`` included (OOV words count as -inf)."""
        total, history = 0.0, ("", BOS)
        for word in [*words, EOS]:
            score = self.log10_prob(history, word)
            if score is None:
                return -math.inf
            total += score
            history = (history[1], word)
        return total
