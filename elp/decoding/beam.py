"""CTC beam search with the set's word LM (shallow fusion), via pyctcdecode's search."""

from __future__ import annotations

import math

import numpy as np
from pyctcdecode import Alphabet, BeamSearchDecoderCTC
from pyctcdecode.language_model import AbstractLanguageModel
from pygtrie import CharTrie

from elp.decoding.bigram import BOS, EOS, WordBigramLM

LOG10_TO_LN = math.log(10)


class _FusionLM(AbstractLanguageModel):
    """pyctcdecode's language-model interface over :class:`WordBigramLM`; a state is the last word."""

    def __init__(self, lm: WordBigramLM) -> None:
        self.lm = lm
        self.alpha, self.beta = lm.config.alpha, lm.config.beta
        self.unk = lm.config.unk_score_offset
        unigram, _ = lm.tables()
        self.prefixes = CharTrie.fromkeys(w for w in unigram if w not in (BOS, EOS))

    @property
    def order(self) -> int:
        return 2

    def get_start_state(self) -> str:
        return BOS

    def score_partial_token(self, partial_token: str) -> float:
        # a partial word no vocabulary word starts with is penalised like an unknown word
        oov = not self.prefixes.has_node(partial_token)
        return self.unk * oov * max(1.0, len(partial_token) / 6)

    def score(self, prev_state: str, word: str, is_last_word: bool = False) -> tuple[float, str]:
        log10 = self.lm.log10_prob(prev_state, word)
        score = self.unk if log10 is None else log10
        if is_last_word:
            score += self.lm.log10_prob(word, EOS) or 0.0
        return self.alpha * score * LOG10_TO_LN + self.beta, word


class CTCBeamDecoder:
    """Best transcript of CTC log-probabilities under the set's word LM."""

    def __init__(self, vocab: list[str], lm: WordBigramLM) -> None:
        labels = ["" if i == 0 else symbol for i, symbol in enumerate(vocab)]  # index 0 is the blank
        self.beam_width = lm.config.beam_width
        self.decoder = BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), _FusionLM(lm))

    def decode(self, log_probs: np.ndarray) -> str:
        text = self.decoder.decode(np.asarray(log_probs, dtype=np.float32), beam_width=self.beam_width)
        return " ".join(text.split())
