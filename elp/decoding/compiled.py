"""The CTC prefix beam search of :mod:`elp.decoding.beam`, compiled with numba.

Why: with the fusion chosen on natural voices (temperature 3.0) the Python search keeps more symbols above its
pruning floor and takes about half of an ``asr-default`` clip's time (85 ms of ~190). This is the same algorithm
on integers instead of strings, compiled to machine code and run without the interpreter's lock, so post-processing
threads decode clips in parallel:

* a prefix is a node of a tree built during the search (parent, last symbol; a dict from ``parent * symbols +
  symbol`` to the child), so a prefix one character longer costs a look-up, not a new string;
* its LM state is (completed words' score, the last word's index, the row of its two-word history where the LM
  has a trigram level for it, the partial word's span of the sorted vocabulary): a partial word one character
  longer narrows its span by two binary searches on that character position, which is what
  :meth:`WordBigramLM.prefix_span` answers by bisecting strings;
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

from elp.decoding.beam import MAX_CACHED, Hypothesis, distinct_best, tempered
from elp.decoding.bigram import BOS, EOS, WordBigramLM

try:
    import numba
    from numba import njit, types
    from numba.typed import Dict
except ImportError:  # pragma: no cover - numba is a core dependency; the Python search is the fallback
    numba = None

LN10 = math.log(10)
# a prefix node's integer fields (one row of ``ints``) and float fields (one row of ``floats``)
PARENT, SYMBOL, HISTORY, SPAN_LO, SPAN_HI, LENGTH, STAMP, CONTEXT = range(8)
COMPLETED, LM_SCORE, ENDS_BLANK, ENDS_SYMBOL = range(4)


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

    # -- the LM: ``lm`` = (word code points, word offsets, unigram table, sorted bigram keys, their log10 p,
    #    then :meth:`WordBigramLM.trigram_arrays`: two-word history keys, their log10 back-off, each history's first
    #    trigram, the trigrams' words, their log10 p; empty for a bigram LM)

    @njit(cache=True, nogil=True)
    def _char_bound(lm, lo, hi, position, code, upper):
        """First word index in ``[lo, hi)`` whose character at ``position`` is >= ``code`` (> with ``upper``);
        words that end before ``position`` sort first (they count as character -1)."""
        codes, offsets = lm[0], lm[1]
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
    def _trigram_row(lm, before, last):
        """The row of the two-word history (``before``, ``last``) in the trigram level, or -1 when it has none."""
        history_keys = lm[5]
        if before < 0 or last < 0 or history_keys.shape[0] == 0:
            return -1
        key = before * (lm[1].shape[0] - 1) + last
        at = np.searchsorted(history_keys, key)
        if at < history_keys.shape[0] and history_keys[at] == key:
            return at
        return -1

    @njit(cache=True, nogil=True)
    def _log10_prob(lm, history, context, word):
        """:meth:`WordBigramLM.log10_prob` for in-vocabulary ``word``; ``history`` -1 = a word outside the LM,
        ``context`` the row of the two-word history (:func:`_trigram_row`)."""
        unigram, keys, values = lm[2], lm[3], lm[4]
        if history < 0:
            return unigram[word, 0]
        key = history * (lm[1].shape[0] - 1) + word
        at = np.searchsorted(keys, key)
        found = at < keys.shape[0] and keys[at] == key
        bigram = values[at] if found else unigram[history, 1] + unigram[word, 0]
        if context < 0:
            return bigram
        starts, trigram_words = lm[7], lm[8]
        first, stop = starts[context], starts[context + 1]
        at = first + np.searchsorted(trigram_words[first:stop], word)
        if at < stop and trigram_words[at] == word:
            return lm[9][at]
        return lm[6][context] + bigram

    @njit(cache=True, nogil=True)
    def _best_log10_prob(lm, history, context, lo, hi, best_unigram_cache):
        """:meth:`WordBigramLM.best_log10_prob` of a non-empty span."""
        best = _best_bigram_log10_prob(lm, history, lo, hi, best_unigram_cache)
        if context < 0:
            return best
        starts, trigram_words = lm[7], lm[8]
        first, stop = starts[context], starts[context + 1]
        a = first + np.searchsorted(trigram_words[first:stop], lo)
        b = first + np.searchsorted(trigram_words[first:stop], hi)
        best = lm[6][context] + best
        if b > a:
            return max(best, lm[9][a:b].max())
        return best

    @njit(cache=True, nogil=True)
    def _best_bigram_log10_prob(lm, history, lo, hi, best_unigram_cache):
        unigram, keys, values = lm[2], lm[3], lm[4]
        num_words = lm[1].shape[0] - 1
        span_key = lo * (num_words + 1) + hi
        if span_key in best_unigram_cache:
            best_unigram = best_unigram_cache[span_key]
        else:
            best_unigram = unigram[lo:hi, 0].max()
            best_unigram_cache[span_key] = best_unigram
        if history < 0:
            return best_unigram
        first = np.searchsorted(keys, history * num_words + lo)
        last = np.searchsorted(keys, history * num_words + hi)
        best = unigram[history, 1] + best_unigram
        if last > first:
            return max(best, values[first:last].max())
        return best

    @njit(cache=True, nogil=True)
    def _word_of(lm, lo, hi, length):
        """The vocabulary index of the partial word itself, or -1 when it is not a word (the shortest word of its
        span comes first, and is the partial word when as long)."""
        offsets = lm[1]
        if hi > lo and offsets[lo + 1] - offsets[lo] == length:
            return lo
        return -1

    # -- scores: ``fusion`` = (alpha, beta, unknown-word offset, look-ahead on)

    @njit(cache=True, nogil=True)
    def _word_score(lm, fusion, history, context, word):
        if word < 0:
            return fusion[2] + fusion[1]
        return fusion[0] * _log10_prob(lm, history, context, word) * LN10 + fusion[1]

    @njit(cache=True, nogil=True)
    def _partial_score(lm, fusion, caches, history, context, lo, hi, length):
        """``CTCBeamDecoder._partial_score``: nothing, the unknown-word offset, or the look-ahead score."""
        if length == 0:
            return 0.0
        if hi <= lo:
            return fusion[2]
        if not fusion[3]:
            return 0.0
        num_words = lm[1].shape[0] - 1
        if context < 0:  # keyed by the last word, or by the two-word history's row in their own table
            key, lookahead_cache = ((history + 1) * (num_words + 1) + lo) * (num_words + 1) + hi, caches[1]
        else:
            key, lookahead_cache = (context * (num_words + 1) + lo) * (num_words + 1) + hi, caches[2]
        if key not in lookahead_cache:
            lookahead_cache[key] = fusion[0] * _best_log10_prob(lm, history, context, lo, hi, caches[0]) * LN10
        return lookahead_cache[key]

    @njit(cache=True, nogil=True)
    def _new_node(key, node, symbol, space, symbol_codes, ints, floats, lm, fusion, caches):
        """Prefix ``node`` + ``symbol`` as node ``key``: ``CTCBeamDecoder._extend`` (a space completes the partial
        word, another symbol narrows its span) and its LM score."""
        ints[key, PARENT], ints[key, SYMBOL], ints[key, STAMP] = node, symbol, -1
        ints[key, HISTORY], floats[key, COMPLETED] = ints[node, HISTORY], floats[node, COMPLETED]
        ints[key, CONTEXT] = ints[node, CONTEXT]
        lo, hi, length = ints[node, SPAN_LO], ints[node, SPAN_HI], ints[node, LENGTH]
        if symbol != space:
            if hi > lo:
                code = symbol_codes[symbol]
                lo = _char_bound(lm, lo, hi, length, code, False)
                hi = _char_bound(lm, lo, hi, length, code, True)
            length += 1
        elif length > 0:
            word = _word_of(lm, lo, hi, length)
            floats[key, COMPLETED] += _word_score(lm, fusion, ints[node, HISTORY], ints[node, CONTEXT], word)
            ints[key, CONTEXT] = _trigram_row(lm, ints[node, HISTORY], word)
            ints[key, HISTORY], lo, hi, length = word, 2, lm[1].shape[0] - 1, 0
        ints[key, SPAN_LO], ints[key, SPAN_HI], ints[key, LENGTH] = lo, hi, length
        floats[key, LM_SCORE] = floats[key, COMPLETED] + _partial_score(lm, fusion, caches, ints[key, HISTORY],
                                                                         ints[key, CONTEXT], lo, hi, length)

    @njit(cache=True, nogil=True)
    def _final_score(node, ints, floats, lm, fusion, eos):
        """``CTCBeamDecoder._final_score``: the last partial word completed, then the sentence end."""
        total, last, context = floats[node, COMPLETED], ints[node, HISTORY], ints[node, CONTEXT]
        if ints[node, LENGTH] > 0:
            word = _word_of(lm, ints[node, SPAN_LO], ints[node, SPAN_HI], ints[node, LENGTH])
            total += _word_score(lm, fusion, last, context, word)
            last, context = word, _trigram_row(lm, last, word)
        return total + fusion[0] * _log10_prob(lm, last, context, eos) * LN10

    # -- the search

    @njit(cache=True, nogil=True)
    def _add_path(key, value, slot, frame, ints, floats, touched, count):
        """Log-add ``value`` into prefix ``key``'s ``slot`` (ends in blank / in a symbol) for this frame, as
        ``_extend_beams`` does; a prefix first met this frame joins ``touched``. Returns the new count."""
        if ints[key, STAMP] != frame:
            ints[key, STAMP] = frame
            floats[key, ENDS_BLANK], floats[key, ENDS_SYMBOL] = -np.inf, -np.inf
            floats[key, slot] = value
            touched[count] = key
            return count + 1
        if value != -np.inf:
            held = floats[key, slot]
            floats[key, slot] = value if held == -np.inf else _lae(held, value)
        return count

    @njit(cache=True, nogil=True)
    def _grown(ints, floats):
        """The node tables at twice their rows."""
        more_ints = np.empty((2 * ints.shape[0], ints.shape[1]), np.int64)
        more_floats = np.empty((2 * floats.shape[0], floats.shape[1]), np.float64)
        more_ints[: ints.shape[0]], more_floats[: floats.shape[0]] = ints, floats
        return more_ints, more_floats

    @njit(cache=True, nogil=True)
    def _kept_beams(touched, count, floats, beam_width):
        """The ``beam_width`` best prefixes of the frame, best first (``heapq.nlargest``; ties keep the order
        they were met in) and their two scores."""
        scores = np.empty(count, np.float64)
        for j in range(count):
            node = touched[j]
            scores[j] = _lae(floats[node, ENDS_BLANK], floats[node, ENDS_SYMBOL]) + floats[node, LM_SCORE]
        kept = touched[np.argsort(-scores, kind="mergesort")[:beam_width]]
        return kept, floats[kept, ENDS_BLANK].copy(), floats[kept, ENDS_SYMBOL].copy()

    @njit(cache=True, nogil=True)
    def _ranked(beam, ends_blank, ends_symbol, ints, floats, lm, fusion, eos, count):
        """The beam's ``count`` best prefixes by their whole score (the last word and the sentence end scored;
        equals in beam order, so the first is ``CTCBeamDecoder.decode``'s): their symbols end to end, each one's
        start in ``offsets``, their whole scores and their acoustic (CTC) log-probabilities."""
        acoustic, totals = np.empty(beam.shape[0]), np.empty(beam.shape[0])
        for i in range(beam.shape[0]):
            acoustic[i] = _lae(ends_blank[i], ends_symbol[i])
            totals[i] = acoustic[i] + _final_score(beam[i], ints, floats, lm, fusion, eos)
        order = np.argsort(-totals, kind="mergesort")[:count]
        offsets = np.zeros(order.shape[0] + 1, np.int64)
        for k in range(order.shape[0]):
            depth, node = 0, beam[order[k]]
            while node > 0:
                depth, node = depth + 1, ints[node, PARENT]
            offsets[k + 1] = offsets[k] + depth
        symbols = np.empty(offsets[-1], np.int64)
        for k in range(order.shape[0]):
            node, at = beam[order[k]], offsets[k + 1]
            while node > 0:
                at -= 1
                symbols[at] = ints[node, SYMBOL]
                node = ints[node, PARENT]
        return symbols, offsets, totals[order], acoustic[order]

    @njit(cache=True, nogil=True)
    def _search(log_probs, symbol_codes, space, beam_width, prune_logp, blank_skip_logp, lm, fusion, bos, eos,
                caches, count):
        """The ``count`` best prefixes (:func:`_ranked`): ``CTCBeamDecoder.nbest`` on a tree of prefix nodes."""
        num_symbols = log_probs.shape[1]
        ints, floats = np.empty((1024, 8), np.int64), np.empty((1024, 4), np.float64)
        children = Dict.empty(types.int64, types.int64)  # parent * symbols + symbol -> child node
        # the root: the empty prefix, no word yet, its partial word's span every word after the two markers
        ints[0, PARENT], ints[0, SYMBOL], ints[0, HISTORY], ints[0, STAMP], ints[0, CONTEXT] = -1, -1, bos, -1, -1
        ints[0, SPAN_LO], ints[0, SPAN_HI], ints[0, LENGTH] = 2, lm[1].shape[0] - 1, 0
        floats[0, COMPLETED], floats[0, LM_SCORE] = 0.0, 0.0
        nodes, beam = 1, np.zeros(1, np.int64)
        ends_blank, ends_symbol = np.zeros(1), np.full(1, -np.inf)
        for frame in range(log_probs.shape[0]):
            row = log_probs[frame]
            if row[0] > blank_skip_logp:  # (almost) surely blank: every beam just continues
                for i in range(beam.shape[0]):
                    ends_blank[i], ends_symbol[i] = _lae(ends_blank[i], ends_symbol[i]) + row[0], -np.inf
                continue
            candidates = np.flatnonzero(row > prune_logp)
            if candidates.shape[0] == 0:
                candidates = np.array([np.argmax(row)], np.int64)
            touched, count = np.empty(beam.shape[0] * (candidates.shape[0] + 1), np.int64), 0
            for i in range(beam.shape[0]):
                node, b, n = beam[i], ends_blank[i], ends_symbol[i]
                total, last = _lae(b, n), ints[node, SYMBOL]
                for index in candidates:
                    p = row[index]
                    if index == 0:
                        count = _add_path(node, total + p, ENDS_BLANK, frame, ints, floats, touched, count)
                        continue
                    if index == space and (last == -1 or last == space):  # no leading or double spaces
                        count = _add_path(node, total + p, ENDS_SYMBOL, frame, ints, floats, touched, count)
                        continue
                    value = total + p
                    if last == index:  # a repeat without a blank collapses into the prefix, or after one repeats
                        count = _add_path(node, n + p, ENDS_SYMBOL, frame, ints, floats, touched, count)
                        value = b + p
                    child_key = node * num_symbols + index
                    if child_key in children:
                        child = children[child_key]
                    else:
                        if nodes == ints.shape[0]:
                            ints, floats = _grown(ints, floats)
                        child, nodes = nodes, nodes + 1
                        children[child_key] = child
                        _new_node(child, node, index, space, symbol_codes, ints, floats, lm, fusion, caches)
                    count = _add_path(child, value, ENDS_SYMBOL, frame, ints, floats, touched, count)
            beam, ends_blank, ends_symbol = _kept_beams(touched, count, floats, beam_width)
        return _ranked(beam, ends_blank, ends_symbol, ints, floats, lm, fusion, eos, count)


class CompiledCTCBeamDecoder:
    """:class:`elp.decoding.beam.CTCBeamDecoder` compiled (module docstring): the same ``decode``."""

    def __init__(self, vocab: list[str], lm: WordBigramLM, prune_logp: float = -6.0,
                 blank_skip_logp: float = -0.002) -> None:
        if numba is None:
            raise RuntimeError("numba is not installed: use elp.decoding.beam.CTCBeamDecoder")
        self.vocab = list(vocab)
        self.lm = lm
        config = lm.config
        self.beam_width, self.temperature = config.beam_width, config.temperature
        self.prune_logp, self.blank_skip_logp = prune_logp, blank_skip_logp
        words, index, unigram, keys, values = lm._lookup()
        if config.lookahead:
            lm.sorted_vocabulary()  # raises unless the vocabulary is stored sorted, as the search needs
        # every word's code points in one array (UTF-32: one unit a code point), each word's start in offsets
        codes = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.int32)
        offsets = np.zeros(len(words) + 1, np.int64)
        np.cumsum([len(word) for word in words], out=offsets[1:])
        self._lm = (codes, offsets, unigram, keys, values, *lm.trigram_arrays())
        self._fusion = (float(config.alpha), float(config.beta), float(config.unk_score_offset), bool(config.lookahead))
        self._bos, self._eos = index[BOS], index[EOS]
        self._space = self.vocab.index(" ") if " " in self.vocab else -1
        self._symbol_codes = np.array([ord(s) if len(s) == 1 else -2 for s in self.vocab], np.int32)
        self._caches = threading.local()

    @property
    def _thread_caches(self) -> tuple[Any, Any, Any]:
        """This thread's look-up caches (best unigram of a span, look-ahead scores by last word and by two-word
        history). The search runs without the GIL, so two threads decoding with one decoder (a server's model
        workers) must not share a typed dict: concurrent writes to one corrupt it."""
        caches = getattr(self._caches, "dicts", None)
        if caches is None:
            caches = self._caches.dicts = tuple(Dict.empty(types.int64, types.float64) for _ in range(3))
        return caches

    def decode(self, log_probs: np.ndarray) -> str:
        return self.nbest(log_probs, 1)[0].text

    def nbest(self, log_probs: np.ndarray, count: int) -> list[Hypothesis]:
        """Up to ``count`` distinct transcripts of the final beam, best first (``CTCBeamDecoder.nbest``)."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if self.temperature != 1.0:
            log_probs = tempered(log_probs, self.temperature)
        caches = self._thread_caches
        if any(len(cache) > MAX_CACHED for cache in caches):  # a long-lived decoder's: start afresh
            for cache in caches:
                cache.clear()
        symbols, offsets, totals, acoustic = _search(
            np.ascontiguousarray(log_probs), self._symbol_codes, self._space, self.beam_width, self.prune_logp,
            self.blank_skip_logp, self._lm, self._fusion, self._bos, self._eos, caches, 2 * max(count, 1))
        symbols, offsets = symbols.tolist(), offsets.tolist()
        texts = (" ".join("".join(self.vocab[s] for s in symbols[offsets[k]:offsets[k + 1]]).split())
                 for k in range(len(offsets) - 1))
        return distinct_best(zip(texts, totals.tolist(), acoustic.tolist(), strict=True), count)


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
