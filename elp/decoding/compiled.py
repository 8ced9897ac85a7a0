"""The CTC prefix beam search of :mod:`elp.decoding.beam`, compiled with numba.

Why: with the fusion chosen on natural voices (temperature 3.0) the Python search keeps more symbols above its
pruning floor and takes about half of an ``asr-default`` clip's time (85 ms of ~190). This is the same algorithm
on integers instead of strings, compiled to machine code and run without the interpreter's lock, so post-processing
threads decode clips in parallel:

* a prefix is a node of a tree built during the search (parent, last symbol; a dict from ``parent * symbols +
  symbol`` to the child), so a prefix one character longer costs a look-up, not a new string;
* its LM state is (completed words' score, the last word's index, the partial word's span of the sorted
  vocabulary): a partial word one character longer narrows its span by two binary searches on that character
  position, which is what :meth:`WordBigramLM.prefix_span` answers by bisecting strings;
* the word-end and look-ahead scores read the LM's own sorted arrays (:meth:`WordBigramLM._lookup`) in the same
  order of float operations as the Python search, and beams are kept in the same order, so both give the same
  transcripts (``tests/elp/test_compiled_beam.py`` checks it clip by clip). Ties between equal scores are the one
  place they may differ: the Python search breaks them by the prefix's text, this one by insertion order.

:class:`CompiledCTCBeamDecoder` has :class:`elp.decoding.beam.CTCBeamDecoder`'s ``decode``; the Python search stays
the reference and the fallback where numba is not installed (:func:`beam_decoder`).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from elp.decoding.beam import MAX_CACHED, tempered
from elp.decoding.bigram import BOS, EOS, WordBigramLM

try:
    import numba
    from numba import njit, types
    from numba.typed import Dict
except ImportError:  # pragma: no cover - numba is a core dependency; the Python search is the fallback
    numba = None

LN10 = math.log(10)


def available() -> bool:
    return numba is not None


if numba is not None:

    @njit(cache=True, nogil=True)
    def _lae(a: float, b: float) -> float:
        """``_logaddexp`` of the Python search: the same operations, so the same floats."""
        if a == -np.inf:
            return b
        if b == -np.inf:
            return a
        if a > b:
            return a + math.log1p(math.exp(b - a))
        return b + math.log1p(math.exp(a - b))

    @njit(cache=True, nogil=True)
    def _char_bound(codes, offsets, lo, hi, position, code, upper):
        """First word index in ``[lo, hi)`` whose character at ``position`` is >= ``code`` (> with ``upper``);
        words that end before ``position`` sort first (they count as character -1)."""
        while lo < hi:
            mid = (lo + hi) // 2
            start = offsets[mid]
            value = codes[start + position] if start + position < offsets[mid + 1] else -1
            if value < code or (upper and value == code):
                lo = mid + 1
            else:
                hi = mid
        return lo

    @njit(cache=True, nogil=True)
    def _log10_prob(history, word, unigram, keys, values, num_words):
        """:meth:`WordBigramLM.log10_prob` for in-vocabulary ``word``; ``history`` -1 = a word outside the LM."""
        if history < 0:
            return unigram[word, 0]
        key = history * num_words + word
        at = np.searchsorted(keys, key)
        if at < keys.shape[0] and keys[at] == key:
            return values[at]
        return unigram[history, 1] + unigram[word, 0]

    @njit(cache=True, nogil=True)
    def _lookahead(history, lo, hi, unigram, keys, values, num_words, best_unigram_cache):
        """:meth:`WordBigramLM.best_log10_prob` of a non-empty span."""
        span_key = lo * (num_words + 1) + hi
        if span_key in best_unigram_cache:
            best_unigram = best_unigram_cache[span_key]
        else:
            best_unigram = unigram[lo, 0]
            for i in range(lo + 1, hi):
                if unigram[i, 0] > best_unigram:
                    best_unigram = unigram[i, 0]
            best_unigram_cache[span_key] = best_unigram
        if history < 0:
            return best_unigram
        base = history * num_words
        first = np.searchsorted(keys, base + lo)
        last = np.searchsorted(keys, base + hi)
        best = unigram[history, 1] + best_unigram
        if last > first:
            top = values[first]
            for i in range(first + 1, last):
                if values[i] > top:
                    top = values[i]
            if top > best:
                return top
        return best

    @njit(cache=True, nogil=True)
    def _search(log_probs, symbol_codes, space, beam_width, prune_logp, blank_skip_logp, alpha, beta, unk,
                lookahead, codes, offsets, unigram, keys, values, bos, eos, best_unigram_cache, lookahead_cache):
        """The best prefix's symbols (vocabulary indices), the search of ``CTCBeamDecoder.decode``."""
        frames, num_symbols = log_probs.shape
        num_words = offsets.shape[0] - 1
        capacity = 1024
        parent = np.empty(capacity, np.int64)
        last_symbol = np.empty(capacity, np.int64)
        completed = np.empty(capacity, np.float64)
        history = np.empty(capacity, np.int64)
        span_lo = np.empty(capacity, np.int64)
        span_hi = np.empty(capacity, np.int64)
        partial_len = np.empty(capacity, np.int64)
        lm_score = np.empty(capacity, np.float64)
        slot_b = np.empty(capacity, np.float64)
        slot_n = np.empty(capacity, np.float64)
        stamp = np.full(capacity, -1, np.int64)
        children = Dict.empty(types.int64, types.int64)
        # the root: the empty prefix, no word yet, the partial word's span = every word after the markers
        parent[0], last_symbol[0], completed[0], history[0] = -1, -1, 0.0, bos
        span_lo[0], span_hi[0], partial_len[0], lm_score[0] = 2, num_words, 0, 0.0
        nodes = 1
        beam_nodes = np.zeros(1, np.int64)
        beam_b = np.zeros(1, np.float64)
        beam_n = np.full(1, -np.inf)
        touched = np.empty(beam_width * num_symbols + beam_width, np.int64)
        for frame in range(frames):
            row = log_probs[frame]
            blank = row[0]
            if blank > blank_skip_logp:  # (almost) surely blank: every beam just continues
                for i in range(beam_nodes.shape[0]):
                    beam_b[i] = _lae(beam_b[i], beam_n[i]) + blank
                    beam_n[i] = -np.inf
                continue
            candidates = np.flatnonzero(row > prune_logp)
            if candidates.shape[0] == 0:
                candidates = np.array([np.argmax(row)], np.int64)
            if touched.shape[0] < beam_nodes.shape[0] * (candidates.shape[0] + 1):
                touched = np.empty(beam_nodes.shape[0] * (candidates.shape[0] + 1), np.int64)
            count = 0
            for i in range(beam_nodes.shape[0]):
                node, b, n = beam_nodes[i], beam_b[i], beam_n[i]
                total = _lae(b, n)
                last = last_symbol[node]
                for index in candidates:
                    p = row[index]
                    if index == 0:
                        key, value, into_n = node, total + p, False
                    elif index == space and (last == -1 or last == space):
                        key, value, into_n = node, total + p, True  # no leading or double spaces
                    else:
                        if last == index:  # a repeat without a blank collapses into the prefix...
                            value = n + p
                            if stamp[node] != frame:
                                stamp[node] = frame
                                slot_b[node], slot_n[node] = -np.inf, value
                                touched[count] = node
                                count += 1
                            elif value != -np.inf:
                                slot_n[node] = value if slot_n[node] == -np.inf else _lae(slot_n[node], value)
                            value = b + p  # ...or, after a blank, repeats
                        else:
                            value = total + p
                        into_n = True
                        child_key = node * num_symbols + index
                        if child_key in children:
                            key = children[child_key]
                        else:
                            if nodes == parent.shape[0]:
                                grown = 2 * nodes
                                parent = _grow(parent, grown)
                                last_symbol = _grow(last_symbol, grown)
                                completed = _grow(completed, grown)
                                history = _grow(history, grown)
                                span_lo = _grow(span_lo, grown)
                                span_hi = _grow(span_hi, grown)
                                partial_len = _grow(partial_len, grown)
                                lm_score = _grow(lm_score, grown)
                                slot_b = _grow(slot_b, grown)
                                slot_n = _grow(slot_n, grown)
                                stamp = _grow_stamp(stamp, grown)
                            key = nodes
                            nodes += 1
                            children[child_key] = key
                            parent[key], last_symbol[key] = node, index
                            _extend_state(key, node, index, space, symbol_codes, codes, offsets, completed, history,
                                          span_lo, span_hi, partial_len, alpha, beta, unk, unigram, keys, values,
                                          num_words)
                            lm_score[key] = completed[key] + _partial_score(
                                history[key], span_lo[key], span_hi[key], partial_len[key], lookahead, alpha, unk,
                                unigram, keys, values, num_words, best_unigram_cache, lookahead_cache)
                    if stamp[key] != frame:
                        stamp[key] = frame
                        if into_n:
                            slot_b[key], slot_n[key] = -np.inf, value
                        else:
                            slot_b[key], slot_n[key] = value, -np.inf
                        touched[count] = key
                        count += 1
                    elif value != -np.inf:
                        if into_n:
                            slot_n[key] = value if slot_n[key] == -np.inf else _lae(slot_n[key], value)
                        else:
                            slot_b[key] = value if slot_b[key] == -np.inf else _lae(slot_b[key], value)
            scores = np.empty(count, np.float64)
            for j in range(count):
                node = touched[j]
                scores[j] = _lae(slot_b[node], slot_n[node]) + lm_score[node]
            order = np.argsort(-scores, kind="mergesort")[:beam_width]  # stable: ties keep insertion order
            beam_nodes = np.empty(order.shape[0], np.int64)
            beam_b = np.empty(order.shape[0], np.float64)
            beam_n = np.empty(order.shape[0], np.float64)
            for j in range(order.shape[0]):
                node = touched[order[j]]
                beam_nodes[j], beam_b[j], beam_n[j] = node, slot_b[node], slot_n[node]
        best_node, best_score = beam_nodes[0], -np.inf
        for i in range(beam_nodes.shape[0]):
            node = beam_nodes[i]
            score = _lae(beam_b[i], beam_n[i]) + _final_score(node, completed, history, span_lo, span_hi, partial_len,
                                                               offsets, alpha, beta, unk, unigram, keys, values,
                                                               num_words, eos)
            if i == 0 or score > best_score:
                best_node, best_score = node, score
        length = 0
        node = best_node
        while node > 0:
            length += 1
            node = parent[node]
        symbols = np.empty(length, np.int64)
        node = best_node
        for j in range(length - 1, -1, -1):
            symbols[j] = last_symbol[node]
            node = parent[node]
        return symbols

    @njit(cache=True, nogil=True)
    def _grow(array, size):
        out = np.empty(size, array.dtype)
        out[: array.shape[0]] = array
        return out

    @njit(cache=True, nogil=True)
    def _grow_stamp(array, size):
        out = np.full(size, -1, array.dtype)
        out[: array.shape[0]] = array
        return out

    @njit(cache=True, nogil=True)
    def _word_of(lo, hi, length, offsets):
        """The vocabulary index of the partial word itself, or -1 when it is not a word (the shortest word of its
        span comes first, and is the partial word when as long)."""
        if hi > lo and offsets[lo + 1] - offsets[lo] == length:
            return lo
        return -1

    @njit(cache=True, nogil=True)
    def _word_score(history, word, alpha, beta, unk, unigram, keys, values, num_words):
        if word < 0:
            return unk + beta
        return alpha * _log10_prob(history, word, unigram, keys, values, num_words) * (math.log(10.0)) + beta

    @njit(cache=True, nogil=True)
    def _extend_state(key, node, index, space, symbol_codes, codes, offsets, completed, history, span_lo, span_hi,
                      partial_len, alpha, beta, unk, unigram, keys, values, num_words):
        """``CTCBeamDecoder._extend``: a space completes the partial word, any other symbol narrows its span."""
        if index != space:
            completed[key], history[key] = completed[node], history[node]
            length = partial_len[node]
            lo, hi = span_lo[node], span_hi[node]
            if hi > lo:
                code = symbol_codes[index]
                new_lo = _char_bound(codes, offsets, lo, hi, length, code, False)
                hi = _char_bound(codes, offsets, new_lo, hi, length, code, True)
                lo = new_lo
            span_lo[key], span_hi[key], partial_len[key] = lo, hi, length + 1
            return
        if partial_len[node] == 0:
            completed[key], history[key] = completed[node], history[node]
            span_lo[key], span_hi[key], partial_len[key] = span_lo[node], span_hi[node], 0
            return
        word = _word_of(span_lo[node], span_hi[node], partial_len[node], offsets)
        completed[key] = completed[node] + _word_score(history[node], word, alpha, beta, unk, unigram, keys, values,
                                                       num_words)
        history[key] = word
        span_lo[key], span_hi[key], partial_len[key] = 2, num_words, 0

    @njit(cache=True, nogil=True)
    def _partial_score(history, lo, hi, length, lookahead, alpha, unk, unigram, keys, values, num_words,
                       best_unigram_cache, lookahead_cache):
        if length == 0:
            return 0.0
        if hi <= lo:
            return unk
        if not lookahead:
            return 0.0
        key = ((history + 1) * (num_words + 1) + lo) * (num_words + 1) + hi
        if key in lookahead_cache:
            return lookahead_cache[key]
        score = alpha * _lookahead(history, lo, hi, unigram, keys, values, num_words, best_unigram_cache) * (
            math.log(10.0))
        lookahead_cache[key] = score
        return score

    @njit(cache=True, nogil=True)
    def _final_score(node, completed, history, span_lo, span_hi, partial_len, offsets, alpha, beta, unk, unigram, keys,
                     values, num_words, eos):
        """``CTCBeamDecoder._final_score``: the last partial word completed, then the sentence end."""
        total, last = completed[node], history[node]
        if partial_len[node] > 0:
            word = _word_of(span_lo[node], span_hi[node], partial_len[node], offsets)
            total += _word_score(last, word, alpha, beta, unk, unigram, keys, values, num_words)
            last = word
        return total + alpha * _log10_prob(last, eos, unigram, keys, values, num_words) * (math.log(10.0))


class CompiledCTCBeamDecoder:
    """:class:`elp.decoding.beam.CTCBeamDecoder` compiled (module docstring): the same ``decode``."""

    def __init__(self, vocab: list[str], lm: WordBigramLM, prune_logp: float = -6.0,
                 blank_skip_logp: float = -0.002) -> None:
        if numba is None:
            raise RuntimeError("numba is not installed: use elp.decoding.beam.CTCBeamDecoder")
        self.vocab = list(vocab)
        self.lm = lm
        config = lm.config
        self.alpha, self.beta, self.unk = config.alpha, config.beta, config.unk_score_offset
        self.beam_width, self.lookahead, self.temperature = config.beam_width, config.lookahead, config.temperature
        self.prune_logp, self.blank_skip_logp = prune_logp, blank_skip_logp
        words, index, unigram, keys, values = lm._lookup()
        if config.lookahead:
            lm.prefix_span("a")  # raises unless the vocabulary is stored sorted, as the search needs
        encoded = [np.frombuffer(word.encode("utf-32-le"), dtype=np.int32) for word in words]
        self._codes = np.concatenate(encoded) if encoded else np.zeros(0, np.int32)
        self._offsets = np.zeros(len(words) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._unigram, self._keys, self._values = unigram, keys, values
        self._bos, self._eos = index[BOS], index[EOS]
        self._space = self.vocab.index(" ") if " " in self.vocab else -1
        self._symbol_codes = np.array([ord(s) if len(s) == 1 else -2 for s in self.vocab], np.int32)
        self._caches = threading.local()

    @property
    def _thread_caches(self) -> tuple[Any, Any]:
        """This thread's look-up caches (best unigram of a span, look-ahead scores). The search runs without the
        GIL, so two threads decoding with one decoder (a server's model workers) must not share a typed dict:
        concurrent writes to one corrupt it."""
        caches = getattr(self._caches, "dicts", None)
        if caches is None:
            caches = self._caches.dicts = (Dict.empty(types.int64, types.float64),
                                           Dict.empty(types.int64, types.float64))
        return caches

    def decode(self, log_probs: np.ndarray) -> str:
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if self.temperature != 1.0:
            log_probs = tempered(log_probs, self.temperature)
        best_unigram, lookahead = self._thread_caches
        if len(best_unigram) > MAX_CACHED or len(lookahead) > MAX_CACHED:  # a long-lived decoder's: start afresh
            best_unigram.clear()
            lookahead.clear()
        symbols = _search(np.ascontiguousarray(log_probs), self._symbol_codes, self._space, self.beam_width,
                          self.prune_logp, self.blank_skip_logp, self.alpha, self.beta, self.unk, self.lookahead,
                          self._codes, self._offsets, self._unigram, self._keys, self._values, self._bos, self._eos,
                          best_unigram, lookahead)
        return " ".join("".join(self.vocab[s] for s in symbols.tolist()).split())


def beam_decoder(vocab: list[str], lm: WordBigramLM) -> CompiledCTCBeamDecoder | Any:
    """The search a set's post-processing runs: compiled where numba is installed, else the Python reference."""
    if numba is None:  # pragma: no cover - numba is a core dependency
        from elp.decoding.beam import CTCBeamDecoder

        return CTCBeamDecoder(vocab, lm)
    return CompiledCTCBeamDecoder(vocab, lm)


def warm_up() -> None:
    """Compile the search (or load it from numba's disk cache: ~0.1 s) before the first request needs it; a
    first compile takes ~8 s on two CPU cores. Decodes a few frames under a two-word LM."""
    if numba is None:  # pragma: no cover
        return
    vocab = ["<blank>", " ", "a", "b"]
    lm = WordBigramLM.build(["a b", "b a"], alpha=0.5, beta=0.5, beam_width=4)
    frames = np.log(np.array([[0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1],
                              [0.1, 0.1, 0.1, 0.7]]))
    CompiledCTCBeamDecoder(vocab, lm).decode(frames)
