"""A word bigram language model stored as tensors (so it travels inside the set's safetensors file).

Words are one UTF-8 blob joined by newlines; unigrams carry log10 probability and back-off weight,
bigrams are (history, word) index pairs with their log10 probability: ARPA semantics, no pickle.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from elp.decoding.config import LanguageModelConfig

BOS, EOS = "<s>", "</s>"


class WordBigramLM(nn.Module):
    """Tensor storage for the LM plus cached Python lookups for the decoder."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("words_utf8", torch.zeros(config.num_word_bytes, dtype=torch.uint8))
        self.register_buffer("unigram_log10", torch.zeros(config.num_words, 2))
        self.register_buffer("bigram_index", torch.zeros(config.num_bigrams, 2, dtype=torch.int32))
        self.register_buffer("bigram_log10", torch.zeros(config.num_bigrams))
        self._tables: tuple[dict[str, tuple[float, float]], dict[tuple[str, str], float]] | None = None

    @classmethod
    def build(cls, texts: Iterable[str], general: Mapping[str, float] | None = None, *, discount: float = 0.75,
              mix: float = 0.5, end_probability: float = 0.08, **decoder: float) -> WordBigramLM:
        """Interpolated absolute-discount bigram over ``texts`` (training transcripts), its unigram
        mixed with ``general`` word frequencies (an English prior, e.g. from ``wordfreq``) so words
        never seen in training still get a probability."""
        sentences = [text.split() for text in texts if text.split()]
        counts = collections.Counter(word for words in sentences for word in words)
        total = sum(counts.values()) or 1
        general = dict(general or {})
        general_total = sum(general.values()) or 1.0
        vocab = sorted(set(counts) | set(general))
        weight = mix if general else 1.0
        unigram = {w: max(weight * counts[w] / total + (1 - weight) * general.get(w, 0.0) / general_total, 1e-9)
                   for w in vocab}
        norm = sum(unigram.values()) / (1 - end_probability)
        unigram = {w: p / norm for w, p in unigram.items()}
        unigram[EOS] = end_probability
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        history: collections.Counter[str] = collections.Counter()
        for words in sentences:
            tokens = [BOS, *words, EOS]
            for a, b in zip(tokens, tokens[1:], strict=False):
                pairs[(a, b)] += 1
                history[a] += 1
        followers = collections.Counter(a for a, _ in pairs)
        backoff = {v: discount * followers[v] / c for v, c in history.items()}
        bigrams = {(v, w): max(c - discount, 0.0) / history[v] + backoff[v] * unigram[w] for (v, w), c in pairs.items()}
        words = [BOS, EOS, *sorted(w for w in unigram if w != EOS)]
        index = {w: i for i, w in enumerate(words)}
        blob = "\n".join(words).encode()
        config = LanguageModelConfig(num_words=len(words), num_word_bytes=len(blob), num_bigrams=len(bigrams),
                                     **decoder)
        model = cls(config)
        model.words_utf8.copy_(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
        table = torch.zeros(len(words), 2)
        for w, i in index.items():
            table[i, 0] = -99.0 if w == BOS else math.log10(unigram[w])
            table[i, 1] = math.log10(backoff[w]) if backoff.get(w) else 0.0
        model.unigram_log10.copy_(table)
        if bigrams:
            model.bigram_index.copy_(torch.tensor([[index[v], index[w]] for v, w in bigrams], dtype=torch.int32))
            model.bigram_log10.copy_(torch.tensor([math.log10(p) for p in bigrams.values()]))
        return model

    def tables(self) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], float]]:
        """``({word: (log10 p, log10 backoff)}, {(history, word): log10 p})``, built once."""
        if self._tables is None:
            words = bytes(self.words_utf8.cpu().numpy()).decode().split("\n")
            uni = {w: (float(p), float(b)) for w, (p, b) in zip(words, self.unigram_log10.cpu().tolist(), strict=True)}
            pairs = self.bigram_index.cpu().tolist()
            bi = {(words[a], words[b]): float(p) for (a, b), p in zip(pairs, self.bigram_log10.cpu().tolist(),
                                                                      strict=True)}
            self._tables = (uni, bi)
        return self._tables

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._tables = None
        super()._load_from_state_dict(*args, **kwargs)

    def log10_prob(self, history: str, word: str) -> float | None:
        """ARPA bigram lookup with back-off; None for a word outside the vocabulary."""
        unigram, bigram = self.tables()
        if word not in unigram:
            return None
        if (history, word) in bigram:
            return bigram[(history, word)]
        return unigram.get(history, (0.0, 0.0))[1] + unigram[word][0]

    def sentence_log10_prob(self, words: list[str]) -> float:
        """Total log10 probability of a sentence, ``</s>`` included (OOV words count as -inf)."""
        total, history = 0.0, BOS
        for word in [*words, EOS]:
            score = self.log10_prob(history, word)
            if score is None:
                return -math.inf
            total += score
            history = word
        return total
