"""Drafts for a decoder set's speculative decoding: a small CTC head on the frames the decoder reads.

Why: at batch 1 on a CPU each greedy token step of Whisper's decoder reads all of its weights, so a
clip costs one weight read per token. A guess of the next several tokens lets one decoder pass check
them all (``elp.heads.speculative``); the tokens it keeps are exactly greedy decoding's, so the guess
only moves the cost, never the answer. The guess comes from a CTC head over characters on the same
encoder frames (no second encoder pass), read once a clip, and is turned into the decoder's tokens
word by word as decoding goes (``DraftProposer``).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from elp.spoken_text import normalise

#: the decoder's byte-level BPE symbol for a leading space (GPT-2's alphabet)
SPACE_SYMBOL = "\u0120"


class CtcDraft(nn.Module):
    """Frames (b, T, d) -> character log-probs (b, T, V): a norm, one convolution over time, a linear
    map. Small on purpose: it runs once a clip beside a decoder whose token steps cost far more."""

    def __init__(self, d_model: int, hidden: int, kernel: int, vocab_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.conv = nn.Conv1d(d_model, hidden, kernel, padding=kernel // 2)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        hidden = self.conv(self.norm(frames).transpose(1, 2)).transpose(1, 2)
        return self.out(nn.functional.gelu(hidden)).log_softmax(-1)


def greedy_text(log_probs: torch.Tensor, vocab: list[str]) -> str:
    """Best-path CTC text of one row's (T, V) log-probs; symbol 0 is the blank."""
    return " ".join(word for word, _ in greedy_words(log_probs, vocab))


def greedy_words(log_probs: torch.Tensor, vocab: list[str]) -> list[tuple[str, float]]:
    """Best-path CTC words of one row's (T, V) log-probs, each with its confidence: the lowest
    probability of the frames that spell it (symbol 0 is the blank; ``" "`` parts words)."""
    top, best = log_probs.max(-1)
    words: list[tuple[str, float]] = []
    letters: list[str] = []
    confidence = 1.0
    previous = 0
    for symbol, log_prob in zip(best.tolist(), top.exp().tolist(), strict=True):
        if symbol != 0 and symbol != previous:
            if vocab[symbol] == " ":
                if letters:
                    words.append(("".join(letters), confidence))
                letters, confidence = [], 1.0
            else:
                letters.append(vocab[symbol])
                confidence = min(confidence, log_prob)
        elif symbol != 0 and vocab[symbol] != " ":
            confidence = min(confidence, log_prob)
        previous = symbol
    if letters:
        words.append(("".join(letters), confidence))
    return words


class WordTokenizer:
    """Words -> the decoder's token ids by longest match over its token strings.

    Not the checkpoint's BPE merges (a set does not store them): for a common word the longest match
    is the BPE token; where they differ the draft's token is refused and one decoder pass is spent."""

    def __init__(self, tokens: list[str]) -> None:
        self.ids = {token: index for index, token in enumerate(tokens)}
        self.longest = max((len(token) for token in tokens), default=1)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one tokenizer a set, words repeat across requests
    def encode(self, symbols: str) -> tuple[int, ...]:
        """Ids of a string of byte-level symbols (ASCII letters and the space symbol)."""
        ids, start = [], 0
        while start < len(symbols):
            for end in range(min(len(symbols), start + self.longest), start, -1):
                if symbols[start:end] in self.ids:
                    ids.append(self.ids[symbols[start:end]])
                    start = end
                    break
            else:
                return tuple(ids)  # a symbol with no token: the draft stops there
        return tuple(ids)


def aligned_prefix(spoken: list[str], draft: list[str]) -> int:
    """How many draft words the words decoded so far stand for: the draft prefix at the least word
    edit distance from them (the longer prefix on a tie)."""
    previous = list(range(len(draft) + 1))
    for index, word in enumerate(spoken, start=1):
        current = [index]
        for j, candidate in enumerate(draft, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != candidate)))
        previous = current
    best = min(previous)
    return max(j for j, cost in enumerate(previous) if cost == best)


class DraftProposer:
    """The next tokens to try for one row, from its draft words and the tokens decoded so far."""

    def __init__(self, words: list[str], tokenizer: WordTokenizer, tokens: list[str], end_ids: tuple[int, ...],
                 sure: list[bool] | None = None) -> None:
        self.words = words
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.end_ids = end_ids  # tried after the last draft word: a full stop, then the end of text
        #: per word, whether the draft is sure enough of it to spend decoder positions on it: a proposal
        #: stops before the first word it is not sure of (a wrong token costs its positions in the pass)
        self.sure = sure if sure is not None else [True] * len(words)

    def propose(self, emitted: list[int], most: int) -> list[int]:
        if most <= 0 or not self.words:
            return []
        if not emitted:
            return self._symbols(0, True, most)
        from elp.heads.seq2seq import detokenize

        text = detokenize(emitted, self.tokens)
        spoken = normalise(text).split()
        consumed = aligned_prefix(spoken, self.words) if spoken else 0
        last_symbol = self.tokens[emitted[-1]] if 0 <= emitted[-1] < len(self.tokens) else ""
        if spoken and consumed and spoken[-1] != self.words[consumed - 1] \
                and self.words[consumed - 1].startswith(spoken[-1]) and last_symbol[-1:].isalpha():
            # the last word is still being spelt: its remaining letters first
            if not self.sure[consumed - 1]:
                return []
            remainder = self.words[consumed - 1][len(spoken[-1]):]
            return list((self.tokenizer.encode(remainder) + self._encoded(consumed))[:most])
        capital = text.rstrip().endswith((".", "?", "!"))
        if consumed == len(self.words):  # every draft word is out: the end, after a full stop unless there is one
            return list((self.end_ids[-1:] if capital else self.end_ids)[:most])
        return self._symbols(consumed, capital, most)

    def _symbols(self, start: int, capital: bool, most: int) -> list[int]:
        if not self.sure[start]:
            return []
        word = self.words[start].capitalize() if capital else self.words[start]
        return list((self.tokenizer.encode(SPACE_SYMBOL + word) + self._encoded(start + 1))[:most])

    def _encoded(self, start: int) -> tuple[int, ...]:
        """The tokens of the words from ``start`` on, up to the first the draft is not sure of, and
        the end if it is sure of them all."""
        ids: tuple[int, ...] = ()
        for word, sure in zip(self.words[start:], self.sure[start:], strict=True):
            if not sure:
                return ids
            ids += self.tokenizer.encode(SPACE_SYMBOL + word)
        return ids + self.end_ids
