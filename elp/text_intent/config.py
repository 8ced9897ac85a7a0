"""The text branch's part of ``adapter_config.json`` (torch-free: the config module imports it)."""

from __future__ import annotations

from dataclasses import dataclass

from elp.config_parsing import build_strict
from elp.decoding.config import LanguageModelConfig
from elp.errors import ConfigError
from elp.heads.config import HeadConfig
from elp.tuners.l_adapter.config import LAdapterConfig


@dataclass
class SentenceEncoderConfig:
    """Sizes of a stored sentence encoder (:mod:`elp.text_intent.sentence_encoder`; checked against every
    tensor when a set loads). ``num_pieces``/``num_piece_bytes``: its SentencePiece table."""

    num_pieces: int
    num_piece_bytes: int
    vocab_size: int = 8002
    embedding_dim: int = 256
    hidden_dim: int = 512
    ffn_dim: int = 1536
    heads: int = 4
    source: str = ""

    def __post_init__(self) -> None:
        if min(self.num_pieces, self.num_piece_bytes, self.vocab_size, self.embedding_dim) <= 0:
            raise ConfigError("text_branch.sentence_encoder sizes must be positive")
        if self.embedding_dim % self.heads or self.hidden_dim % self.heads:
            raise ConfigError("text_branch.sentence_encoder widths must divide into its heads")


@dataclass
class TextBranchConfig:
    """``l_adapter``, ``head``, ``vocab``: the ASR set's L-adapter mixing and CTC head, copied (the
    intent set shares that set's E/P, so on the same encoder pass they give the ASR set's transcript:
    best path, or its beam search when ``language_model`` holds a copy of that set's LM). ``num_*``:
    sizes of the stored classifier (feature table, lexicon terms and their feature links, slot values)
    so that loading checks every tensor's shape. ``text_weight``: the text scores' weight in the fused
    intent log-probabilities (acoustic weight 1). ``source``: which ASR set the copy came from.
    ``sentence_encoder``: a sentence encoder trained on broad English whose embedding of the transcript a
    linear layer scores; ``sentence_weight``: its log-probabilities' weight beside the word features'."""

    l_adapter: LAdapterConfig
    head: HeadConfig
    vocab: list[str]
    num_features: int
    num_feature_bytes: int
    num_terms: int
    num_term_bytes: int
    num_links: int
    num_slot_values: int
    text_weight: float = 1.0
    language_model: LanguageModelConfig | None = None
    source: str = ""
    sentence_encoder: SentenceEncoderConfig | None = None
    sentence_weight: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.l_adapter, dict):
            self.l_adapter = build_strict(LAdapterConfig, self.l_adapter, "text_branch.l_adapter")
        if isinstance(self.head, dict):
            self.head = build_strict(HeadConfig, self.head, "text_branch.head")
        if isinstance(self.language_model, dict):
            self.language_model = build_strict(LanguageModelConfig, self.language_model, "text_branch.language_model")
        if isinstance(self.sentence_encoder, dict):
            self.sentence_encoder = build_strict(SentenceEncoderConfig, self.sentence_encoder,
                                                 "text_branch.sentence_encoder")
        if self.sentence_weight < 0 or (self.sentence_weight > 0 and self.sentence_encoder is None):
            raise ConfigError("text_branch.sentence_weight must be >= 0, and > 0 only with a sentence_encoder")
        if not self.vocab or self.vocab[0] != "<blank>":
            raise ConfigError("text_branch.vocab must be a CTC vocabulary (index 0 the blank)")
        sizes = (self.num_features, self.num_feature_bytes, self.num_terms, self.num_term_bytes, self.num_links)
        if min(sizes) < 0 or self.num_features == 0 or self.num_slot_values <= 0:
            raise ConfigError("text_branch sizes must be positive")
        if self.text_weight < 0:
            raise ConfigError("text_branch.text_weight must be >= 0")

