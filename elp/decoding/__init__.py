"""Decoding for ASR sets: an optional word bigram LM stored with the set, and CTC beam search."""

from elp.decoding.bigram import WordBigramLM
from elp.decoding.config import LanguageModelConfig

__all__ = ["LanguageModelConfig", "WordBigramLM"]
