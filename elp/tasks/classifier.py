"""The shared base of utterance classifiers (emotion, intent, ...): a pooled head over the set's
``labels``, trained with cross-entropy, answered with the best label and a probability per label.

A new classifier task is one short module: an instance of :class:`ClassifierTask` (or a subclass
that renames or adds answer fields, as intent does) and a ``register`` line in ``elp/tasks``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from elp.errors import ConfigError
from elp.tasks.base import TaskRequest, TaskSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

    from elp.adapter_set import AdapterSet
    from elp.config import AdapterSetConfig
    from elp.heads.config import HeadConfig


class LabelScorer:
    """Class logits of one clip -> ``{"label", "scores"}`` (softmax over the set's labels)."""

    offload = False

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        probs = output.float().softmax(dim=-1).tolist()
        best = max(range(len(self.labels)), key=probs.__getitem__)
        return {"label": self.labels[best], "scores": dict(zip(self.labels, probs, strict=True))}


@dataclass(frozen=True)
class ClassifierTask(TaskSpec):
    """``class_noun`` names one class in the answer's documentation ("probability per emotion");
    ``label_field`` is the answer's key for the best label; ``example_labels`` make up a test set."""

    class_noun: str = "class"
    label_field: str = "label"
    example_labels: tuple[str, ...] = ("a", "b", "c")
    target_field: str = "label"
    headline_metric: str = "accuracy"
    higher_is_better: bool = True
    metrics: tuple[str, ...] = ("accuracy", "unweighted_accuracy")
    evaluation: str = "labels"

    def validate(self, config: AdapterSetConfig) -> None:
        super().validate(config)
        if not config.labels:
            raise ConfigError(f"a {self.name} adapter set needs its class labels")
        if config.decoder is not None and len(config.decoder.label_ids) != len(config.labels):
            raise ConfigError(f"a {self.name} decoder set scores one token per {self.class_noun}: "
                              f"{len(config.decoder.label_ids)} label tokens for {len(config.labels)} labels")
        if config.slot_names:
            for label in config.labels:
                if len(label.split("_")) != len(config.slot_names):
                    raise ConfigError(f"{self.class_noun} {label!r} does not split into slots {config.slot_names}")

    def num_outputs(self, config: AdapterSetConfig) -> int:
        return len(config.labels or [])

    def build_head(self, head: HeadConfig, input_dim: int, num_outputs: int, *,
                   labels: list[str] | None = None, slot_names: list[str] | None = None) -> nn.Module:
        from elp.heads.pooled import ClassifierHead

        return ClassifierHead(input_dim, num_outputs, head, labels=labels, slot_names=slot_names)

    def example_fields(self, num_outputs: int | None = None) -> dict[str, Any]:
        labels = list(self.example_labels) if num_outputs is None else [f"c{i}" for i in range(num_outputs)]
        return {"labels": labels}

    def build_loss(self, adapter_set: AdapterSet, num_targets: int, label_smoothing: float = 0.0) -> nn.Module:
        from torch import nn

        self.refuse_decoder_training(adapter_set)
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def post_processor(self, adapter_set: AdapterSet) -> LabelScorer:
        return LabelScorer(adapter_set.config.labels or [])

    def answer_field_definitions(self) -> dict[str, Any]:
        """``create_model`` definitions of the answer fields (a subclass adds its own)."""
        return {self.label_field: (str, ...),
                "scores": (dict[str, float], Field(description=f"probability per {self.class_noun}; sums to 1"))}

    @functools.cached_property
    def answer_fields(self) -> type[BaseModel]:
        return create_model(f"{self.title}AnswerFields", **self.answer_field_definitions())

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        row = request.rows[0]
        return {self.label_field: row.label, "scores": {str(k): float(v) for k, v in (row.scores or {}).items()}}
