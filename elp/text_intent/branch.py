"""The text branch's modules and its reader.

:class:`TextBranch` lives inside an intent :class:`~elp.AdapterSet` (``adapter_set.text_branch``, its
tensors under ``text_branch.*`` in the set's safetensors file; no pickle). In the model stage it turns
the set's rows' encoder layers into CTC log-probabilities with a frozen copy of the ASR set's
L-adapters and CTC head; :func:`pack_row` puts them behind the acoustic logits in the row's one output
tensor. In the post stage :class:`TranscriptIntentReader` decodes the transcript (best path, or the
ASR set's beam search when the branch carries a copy of its LM), scores
the intents from its words and fuses them with the acoustic logits (log-linear, ``text_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from elp.decoding.bigram import WordBigramLM
from elp.heads.ctc import CTCHead
from elp.heads.pooled import label_incidence
from elp.string_table import join_strings, split_strings
from elp.text_intent.config import TextBranchConfig
from elp.text_intent.features import feature_indices
from elp.text_intent.sentence_encoder import PieceTokenizer, SentenceEncoder
from elp.tuners.l_adapter import LAdapterStack

if TYPE_CHECKING:
    from elp.adapter_set import AdapterSet


def _byte_tensor(blob: bytes) -> torch.Tensor:
    """A string table's bytes as a uint8 tensor (``torch.frombuffer`` refuses an empty buffer)."""
    if not blob:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8)


def pack_row(logits: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """One row's output: its class logits (C,) then its CTC log-probs (T, V) flattened, one 1-D tensor
    (what travels to a post-processing process)."""
    return torch.cat([logits.reshape(-1), log_probs.reshape(-1)])


def unpack_row(output: torch.Tensor, num_classes: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pack_row` undone: (logits (C,), log-probs (T, V))."""
    return output[:num_classes], output[num_classes:].reshape(-1, vocab_size)


def fuse_log_probs(acoustic_logits: torch.Tensor, text_logits: torch.Tensor, text_weight: float) -> torch.Tensor:
    """Fused intent log-probabilities ``log_softmax(log_softmax(acoustic) + w * log_softmax(text))``
    (the served answer; training chooses ``w`` with the same function)."""
    return (acoustic_logits.log_softmax(-1) + text_weight * text_logits.log_softmax(-1)).log_softmax(-1)


class SentenceScorer:
    """Transcript -> intent logits from a sentence encoder's embedding: a linear layer onto the slot
    values, an intent's logit the sum of its slot values' (the word features' factorisation)."""

    def __init__(self, encoder: SentenceEncoder, tokenizer: PieceTokenizer, slot_weights: torch.Tensor,
                 slot_bias: torch.Tensor) -> None:
        self.encoder, self.tokenizer = encoder, tokenizer
        self.slot_weights = slot_weights.detach().float().cpu()
        self.slot_bias = slot_bias.detach().float().cpu()

    def slot_scores(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.embed(self.tokenizer, texts) @ self.slot_weights + self.slot_bias


class TextClassifier:
    """Transcript -> intent logits: summed feature weights per slot value, an intent's logit the sum of
    its slot values' scores (the acoustic head's factorisation). With a :class:`SentenceScorer`, the
    logits are the word features' log-probabilities plus ``sentence_weight`` x the sentence's. Picklable."""

    def __init__(self, features: list[str], lexicon: dict[str, list[str]], slot_weights: torch.Tensor,
                 slot_bias: torch.Tensor, incidence: torch.Tensor, sentence: SentenceScorer | None = None,
                 sentence_weight: float = 0.0) -> None:
        self.index = {name: i for i, name in enumerate(features)}
        self.lexicon = lexicon
        self.slot_weights = slot_weights.detach().float().cpu()
        self.slot_bias = slot_bias.detach().float().cpu()
        self.incidence = incidence.detach().float().cpu()
        self.sentence, self.sentence_weight = sentence, sentence_weight

    def logits(self, text: str) -> torch.Tensor:
        rows = feature_indices(text, self.lexicon, self.index)
        slot_scores = self.slot_bias + (self.slot_weights[rows].sum(dim=0) if rows else 0.0)
        word_logits = self.incidence @ slot_scores
        if self.sentence is None or self.sentence_weight == 0:
            return word_logits
        sentence_logits = self.incidence @ self.sentence.slot_scores([text])[0]
        return word_logits.log_softmax(-1) + self.sentence_weight * sentence_logits.log_softmax(-1)


class TextBranch(nn.Module):
    """Frozen ASR L-adapters + CTC head, and the text classifier's tables (buffers)."""

    def __init__(self, config: TextBranchConfig, hidden_size: int, labels: list[str], slot_names: list[str]) -> None:
        super().__init__()
        self.config = config
        self.featurizer = LAdapterStack(config.l_adapter, hidden_size)
        self.ctc_head = CTCHead(self.featurizer.output_dim, len(config.vocab), config.head)
        self.language_model = WordBigramLM(config.language_model) if config.language_model is not None else None
        self.requires_grad_(False)  # a copy of another set's modules: never trained here
        incidence = label_incidence(labels, slot_names)
        if incidence.shape[1] != config.num_slot_values:
            raise ValueError(f"text_branch has {config.num_slot_values} slot values, the labels {incidence.shape[1]}")
        self.register_buffer("slot_incidence", incidence, persistent=False)
        self.register_buffer("feature_names_utf8", torch.zeros(config.num_feature_bytes, dtype=torch.uint8))
        self.register_buffer("term_names_utf8", torch.zeros(config.num_term_bytes, dtype=torch.uint8))
        self.register_buffer("term_offsets", torch.zeros(config.num_terms + 1, dtype=torch.int32))
        self.register_buffer("term_features", torch.zeros(config.num_links, dtype=torch.int32))
        self.register_buffer("slot_weights", torch.zeros(config.num_features, config.num_slot_values))
        self.register_buffer("slot_bias", torch.zeros(config.num_slot_values))
        self.sentence_encoder: SentenceEncoder | None = None
        if config.sentence_encoder is not None:
            sentence = config.sentence_encoder
            self.sentence_encoder = SentenceEncoder(sentence)
            self.register_buffer("piece_names_utf8", torch.zeros(sentence.num_piece_bytes, dtype=torch.uint8))
            self.register_buffer("piece_scores", torch.zeros(sentence.num_pieces))
            self.register_buffer("sentence_slot_weights", torch.zeros(sentence.hidden_dim, config.num_slot_values))
            self.register_buffer("sentence_slot_bias", torch.zeros(config.num_slot_values))

    def forward(self, hidden_states: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """(rows, frames, vocab) CTC log-probs from the rows' encoder layer outputs."""
        return self.ctc_head(self.featurizer(hidden_states), lengths)

    def set_classifier(self, features: list[str], lexicon: dict[str, list[str]], slot_weights: torch.Tensor,
                       slot_bias: torch.Tensor) -> None:
        """Store a trained classifier (its sizes must be the config's: build the config from them)."""
        names = join_strings(features)
        terms = sorted(lexicon)
        index = {name: i for i, name in enumerate(features)}
        links = [index[f] for term in terms for f in lexicon[term]]
        offsets = [0]
        for term in terms:
            offsets.append(offsets[-1] + len(lexicon[term]))
        term_blob = join_strings(terms)
        self.feature_names_utf8.copy_(_byte_tensor(names))
        self.term_names_utf8.copy_(_byte_tensor(term_blob))  # empty for a branch without lexicon terms
        self.term_offsets.copy_(torch.tensor(offsets, dtype=torch.int32))
        self.term_features.copy_(torch.tensor(links, dtype=torch.int32))
        self.slot_weights.copy_(slot_weights)
        self.slot_bias.copy_(slot_bias)

    def set_sentence_scorer(self, encoder: SentenceEncoder, pieces: list[str], scores: list[float],
                            slot_weights: torch.Tensor, slot_bias: torch.Tensor) -> None:
        """Store the sentence encoder, its piece table and the linear layer over its embedding."""
        if self.sentence_encoder is None:
            raise ValueError("this branch's config has no sentence_encoder")
        self.sentence_encoder.load_state_dict(encoder.state_dict())
        self.piece_names_utf8.copy_(_byte_tensor(join_strings(pieces)))
        self.piece_scores.copy_(torch.tensor(scores))
        self.sentence_slot_weights.copy_(slot_weights)
        self.sentence_slot_bias.copy_(slot_bias)

    def classifier(self) -> TextClassifier:
        """The stored classifier as plain Python data (the sentence encoder, if any, a frozen CPU module)."""
        features = split_strings(bytes(self.feature_names_utf8.cpu().numpy()), self.config.num_features)
        terms = split_strings(bytes(self.term_names_utf8.cpu().numpy()), self.config.num_terms)
        offsets, links = self.term_offsets.tolist(), self.term_features.tolist()
        lexicon = {term: [features[i] for i in links[offsets[k]: offsets[k + 1]]] for k, term in enumerate(terms)}
        sentence = None
        sentence_config = self.config.sentence_encoder
        if self.sentence_encoder is not None and sentence_config is not None:
            pieces = split_strings(bytes(self.piece_names_utf8.cpu().numpy()), sentence_config.num_pieces)
            encoder = SentenceEncoder(sentence_config)
            stored = self.sentence_encoder.state_dict()
            encoder.load_state_dict({name: value.detach().float().cpu() for name, value in stored.items()})
            sentence = SentenceScorer(encoder, PieceTokenizer(pieces, self.piece_scores.tolist()),
                                      self.sentence_slot_weights, self.sentence_slot_bias)
        return TextClassifier(features, lexicon, self.slot_weights, self.slot_bias, self.slot_incidence,
                              sentence, self.config.sentence_weight)


class TranscriptIntentReader:
    """The post-processing of a row with a text branch: :func:`unpack_row`, the transcript (the ASR
    task's own decoding: best path, or beam search under the LM), text logits, fused intent
    probabilities ``softmax(log_softmax(acoustic) + w * log_softmax(text))``."""

    def __init__(self, labels: list[str], vocab: list[str], classifier: TextClassifier, text_weight: float,
                 language_model: WordBigramLM | None = None) -> None:
        from elp.tasks.asr import CTCTranscriber

        self.labels, self.vocab = list(labels), list(vocab)
        self.classifier, self.text_weight = classifier, text_weight
        self.transcriber = CTCTranscriber(self.vocab, language_model, align=False)
        # best path and a few hundred look-ups: under a millisecond; a beam search is worth a pool process
        self.offload = self.transcriber.offload

    def fused(self, output: torch.Tensor) -> tuple[torch.Tensor, str]:
        """(fused intent log-probabilities, transcript) of one packed row."""
        logits, log_probs = unpack_row(output.float(), len(self.labels), len(self.vocab))
        transcript = self.transcriber(log_probs)["text"]
        text_logits = self.classifier.logits(transcript)
        return fuse_log_probs(logits, text_logits, self.text_weight), transcript

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        fused, transcript = self.fused(output)
        probs = fused.exp().tolist()
        best = max(range(len(self.labels)), key=probs.__getitem__)
        return {"label": self.labels[best], "scores": dict(zip(self.labels, probs, strict=True)), "text": transcript}


@dataclass
class SentencePart:
    """What :func:`attach_text_branch` stores for a sentence scorer: the encoder, its piece table, the
    linear layer onto the slot values and the sentence log-probabilities' weight."""

    encoder: SentenceEncoder
    pieces: list[str]
    scores: list[float]
    slot_weights: torch.Tensor
    slot_bias: torch.Tensor
    weight: float


def attach_text_branch(intent: AdapterSet, asr: AdapterSet, features: list[str], lexicon: dict[str, list[str]],
                       slot_weights: torch.Tensor, slot_bias: torch.Tensor, text_weight: float,
                       source: str = "", with_language_model: bool = False,
                       sentence: SentencePart | None = None) -> AdapterSet:
    """Give ``intent`` (in place; returned) a text branch: a copy of ``asr``'s L-adapters and CTC head
    (``asr`` must share the intent set's E/P for the transcript to be the ASR set's) and the classifier
    (``features`` x slot values ``slot_weights``, ``slot_bias``; ``lexicon`` term -> features);
    ``with_language_model``: also a copy of ``asr``'s LM, so the transcript is its beam search;
    ``sentence``: a sentence encoder's scorer beside the word features."""
    if asr.config.l_adapter is None or not asr.config.vocab:
        raise ValueError("the text branch copies an ASR set with L-adapters and a CTC vocabulary")
    config = intent.config
    terms = sorted(lexicon)
    copied_lm = asr.language_model if with_language_model else None
    branch_config = TextBranchConfig(
        l_adapter=asr.config.l_adapter, head=asr.config.head, vocab=list(asr.config.vocab),
        num_features=len(features), num_feature_bytes=len(join_strings(features)),
        num_terms=len(terms), num_term_bytes=len(join_strings(terms)),
        num_links=sum(len(lexicon[t]) for t in terms), num_slot_values=int(slot_weights.shape[1]),
        text_weight=text_weight, source=source,
        language_model=copied_lm.config if copied_lm is not None else None,
        sentence_encoder=sentence.encoder.config if sentence is not None else None,
        sentence_weight=sentence.weight if sentence is not None else 0.0)
    config.text_branch = branch_config
    try:
        intent.task_spec.validate(config)  # only tasks that support a text branch may carry one
    except Exception:
        config.text_branch = None
        raise
    hidden = int(config.backbone["hidden_size"])
    branch = TextBranch(branch_config, hidden, config.labels or [], config.slot_names or [])
    branch.featurizer.load_state_dict(asr.featurizer.state_dict())
    branch.ctc_head.load_state_dict(asr.head.state_dict())
    branch.set_classifier(features, lexicon, slot_weights, slot_bias)
    if sentence is not None:
        branch.set_sentence_scorer(sentence.encoder, sentence.pieces, sentence.scores, sentence.slot_weights,
                                   sentence.slot_bias)
    if branch.language_model is not None and copied_lm is not None:
        branch.language_model.load_state_dict(copied_lm.state_dict())
    intent.text_branch = branch.to(next(intent.parameters()).device)
    intent.refresh_post_processor()
    return intent
