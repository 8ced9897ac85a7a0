"""Fitting the text branch's classifier: factorised logistic regression on transcript features.

Training examples are the gold training phrasings (the corpus' and the paraphrase family's train
split) and the ASR set's transcripts of the training clips, so the classifier learns the recogniser's
misspellings as well as the words. Every row passes the held-out guard (``training.suites.guard``):
a held-out phrasing is dropped, never trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn.functional import embedding_bag

from elp.heads.pooled import label_incidence
from elp.text_intent.features import transcript_features


@dataclass
class TextExample:
    text: str
    label: str


@dataclass
class FitSettings:
    """``senses``: WordNet senses per part of speech; ``min_count``: a feature's training occurrences to
    be kept (lexicon features always are); ``l2``, ``feature_dropout``, ``steps``, ``lr``: the fit."""

    senses: int = 3
    min_count: int = 1
    l2: float = 1e-4
    feature_dropout: float = 0.3
    steps: int = 300
    lr: float = 0.05
    seed: int = 0


@dataclass
class FittedClassifier:
    features: list[str]
    slot_weights: torch.Tensor
    slot_bias: torch.Tensor
    incidence: torch.Tensor

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.features)}


def feature_table(examples: Sequence[TextExample], lexicon: Mapping[str, Sequence[str]], min_count: int) -> list[str]:
    """Features seen in training: word, pair and trigram features ``min_count`` times, lexicon ones once."""
    counts = Counter(f for ex in examples for f in transcript_features(ex.text, lexicon))
    return sorted(f for f, n in counts.items() if n >= min_count or f[:2] in ("s:", "h:"))


def bags(texts: Sequence[str], lexicon: Mapping[str, Sequence[str]], index: Mapping[str, int]
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature indices, offsets) of each text's features, for ``embedding_bag`` (a sparse design matrix)."""
    flat, offsets = [], []
    for text in texts:
        offsets.append(len(flat))
        flat.extend(index[f] for f in transcript_features(text, lexicon) if f in index)
    return torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def fit(examples: Sequence[TextExample], lexicon: Mapping[str, Sequence[str]], labels: list[str],
        slot_names: list[str], settings: FitSettings) -> FittedClassifier:
    """Full-batch Adam on the intent cross-entropy; feature occurrences dropped at random each step
    (``feature_dropout``) so that no single word carries a class, which leaves weight on the WordNet
    features an unseen synonym shares."""
    torch.manual_seed(settings.seed)
    features = feature_table(examples, lexicon, settings.min_count)
    index = {name: i for i, name in enumerate(features)}
    flat, offsets = bags([ex.text for ex in examples], lexicon, index)
    targets = torch.tensor([labels.index(ex.label) for ex in examples])
    incidence = label_incidence(labels, slot_names)
    weights = torch.zeros(len(features), incidence.shape[1], requires_grad=True)
    bias = torch.zeros(incidence.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([weights, bias], lr=settings.lr)
    for _ in range(settings.steps):
        keep = (torch.rand(flat.shape[0]) >= settings.feature_dropout).float() / (1 - settings.feature_dropout)
        logits = embedding_bag(flat, weights, offsets, mode="sum", per_sample_weights=keep) + bias
        loss = torch.nn.functional.cross_entropy(logits @ incidence.T, targets) + settings.l2 * weights.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return FittedClassifier(features, weights.detach(), bias.detach(), incidence)


def text_logits(model: FittedClassifier, texts: Sequence[str], lexicon: Mapping[str, Sequence[str]]) -> torch.Tensor:
    """(texts x intents) logits of the fitted classifier."""
    flat, offsets = bags(texts, lexicon, model.index())
    return (embedding_bag(flat, model.slot_weights, offsets, mode="sum") + model.slot_bias) @ model.incidence.T


def fit_sentence_scorer(embeddings: torch.Tensor, targets: torch.Tensor, incidence: torch.Tensor, l2: float,
                        steps: int = 400, lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot weights, slot bias) of a linear layer from sentence embeddings onto the slot values, an
    intent's logit the sum of its slot values' (full-batch Adam on the intent cross-entropy + L2)."""
    torch.manual_seed(seed)
    weights = torch.zeros(embeddings.shape[1], incidence.shape[1], requires_grad=True)
    bias = torch.zeros(incidence.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([weights, bias], lr=lr)
    for _ in range(steps):
        logits = (embeddings @ weights + bias) @ incidence.T
        loss = torch.nn.functional.cross_entropy(logits, targets) + l2 * weights.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return weights.detach(), bias.detach()
