"""Configuration of the optional word language model an ASR set decodes with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from elp.errors import ConfigError


@dataclass
class LanguageModelConfig:
    """A word bigram model (optionally with a trigram level: ``num_trigrams`` under ``num_trigram_histories``
    two-word histories) for CTC beam search with shallow fusion. ``alpha`` weighs the LM's log
    probability, ``beta`` rewards each word (both tuned on validation clips), ``beam_width`` bounds the
    search. The sizes fix the shapes of the LM tensors stored beside the set's weights, so a set
    whose tensors do not match its config is refused on load like any other.

    ``lookahead``: a partial word is scored at once by the best LM probability of any vocabulary word
    it starts (given the previous word), and that estimate is replaced by the word's own score when
    it completes. Without it a word's LM score arrives only at its last letter, so a narrow beam drops
    spellings of likely words before they can be rewarded (sets saved before it existed decode as
    they did).

    ``temperature``: the search reads ``log_softmax(log_probs / temperature)``. A CTC head trained to
    near-certainty puts almost all of a frame on one symbol, so the beam holds spellings that differ
    only where the head was sure and wrong; above 1 the near-misses stay in reach of the LM (1: the
    head's own probabilities, as sets saved before it existed decode)."""

    num_words: int
    num_word_bytes: int
    num_bigrams: int
    alpha: float = 0.5
    beta: float = 1.0
    beam_width: int = 32
    unk_score_offset: float = -10.0
    lookahead: bool = False
    temperature: float = 1.0
    num_trigrams: int = 0
    num_trigram_histories: int = 0

    def __post_init__(self) -> None:
        if self.num_words < 3 or self.num_word_bytes < self.num_words or self.num_bigrams < 0:
            raise ConfigError("language model sizes are inconsistent")
        if (self.num_trigrams < 0 or self.num_trigram_histories > self.num_trigrams
                or (self.num_trigrams > 0) != (self.num_trigram_histories > 0)):
            raise ConfigError("trigram sizes are inconsistent")
        if not 1 <= self.beam_width <= 1024 or self.alpha < 0:
            raise ConfigError("beam_width must be in [1, 1024] and alpha >= 0")
        if not 0.1 <= self.temperature <= 10.0:
            raise ConfigError("temperature must be in [0.1, 10]")


#: the precisions a second pass's decoder runs in (``elp.decoding.rescoring.DTYPES``)
RESCORING_PRECISIONS = ("float32", "bfloat16")
#: the encoder precisions a ``by_precision`` variant may be keyed by (``precision@encoder``)
ENCODER_PRECISIONS = ("float32", "int8", "float16", "bfloat16")


@dataclass
class RescoringConfig:
    """A second pass over an ASR set's beam: its ``nbest`` best transcripts scored again by the pretrained decoder of
    the checkpoint the encoder comes from (Whisper's: trained on real speech, it knows which words real people say
    where the CTC head and the word LM hesitate), teacher-forced on the set's own last encoder layer in one batched
    pass. Each transcript scores ``its beam score + weight * log p_decoder(its tokens, end of text) + token_bonus *
    tokens``; the best is answered. The decoder's weights are not in the set: they are read from the checkpoint
    folder the backbone was loaded from (``elp.decoding.rescoring``)."""

    weight: float = 1.0
    token_bonus: float = 0.0
    nbest: int = 8
    source: str = "checkpoint"
    #: settings that replace the ones above where the decoder runs in that precision, e.g. ``{"float32": {"nbest":
    #: 8, "token_bonus": -1.0}}``: a float32 pass costs more a transcript, so it may read fewer (asr-default card).
    #: ``"float32@int8"``: only beside an encoder in int8, whose own pass is cheaper, so the float32 pass weighs
    #: more there; it takes the place of ``"float32"``'s setting (each names its changes to the one above)
    by_precision: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.nbest, int) or not 2 <= self.nbest <= 64:
            raise ConfigError("rescoring.nbest must be an integer in [2, 64]")
        if self.weight <= 0 or abs(self.token_bonus) > 20:
            raise ConfigError("rescoring.weight must be > 0 and |token_bonus| <= 20")
        if self.source != "checkpoint":
            raise ConfigError("rescoring.source must be 'checkpoint' (the backbone's own decoder)")
        if not isinstance(self.by_precision, dict):
            raise ConfigError("rescoring.by_precision must be an object of precisions")
        for key, changes in self.by_precision.items():
            precision, _, encoder = key.partition("@")
            if precision not in RESCORING_PRECISIONS or (encoder and encoder not in ENCODER_PRECISIONS) \
                    or not isinstance(changes, dict):
                raise ConfigError(f"rescoring.by_precision keys must be among {RESCORING_PRECISIONS}, optionally "
                                  f"@ one of {ENCODER_PRECISIONS}, each an object")
            if unknown := sorted(set(changes) - {"weight", "token_bonus", "nbest"}):
                raise ConfigError(f"rescoring.by_precision.{key}: unknown keys {unknown}")
            self.at_precision(precision, encoder or None)  # each variant must be valid on its own

    def at_precision(self, precision: str, encoder: str | None = None) -> RescoringConfig:
        """The setting that applies where the decoder runs in ``precision`` beside an encoder in ``encoder``: the
        ``precision@encoder`` variant, else the ``precision`` one, else this one."""
        variant = f"{precision}@{encoder}"
        changes = self.by_precision[variant] if variant in self.by_precision else self.by_precision.get(precision)
        return dataclasses.replace(self, **changes, by_precision={}) if changes else self
