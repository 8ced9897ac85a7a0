"""Spoken intent recognition: an utterance classifier whose labels may be ``action_object_location``;
then the answer also carries the slots (and the head may score slot values: ``factorized_slots``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from elp.tasks.base import TaskRequest
from elp.tasks.classifier import ClassifierTask, LabelScorer
from elp.tasks.recipe import TrainingRecipe

if TYPE_CHECKING:
    import torch

    from elp.adapter_set import AdapterSet


def split_slots(label: str, slot_names: list[str] | None) -> dict[str, str] | None:
    """``"increase_volume_none"`` + [action, object, location] -> a dict; None if it does not split."""
    if not slot_names:
        return None
    values = label.split("_")
    if len(values) != len(slot_names):
        return None
    return dict(zip(slot_names, values, strict=True))


class TextFusedSlotScorer:
    """A set with a text branch: the fused intent (acoustic + transcript words), its slots and the
    transcript it read (``elp.text_intent``)."""

    def __init__(self, reader: Any, slot_names: list[str] | None) -> None:
        self.reader = reader
        self.slot_names = list(slot_names) if slot_names else None
        self.offload = bool(reader.offload)

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        answer = self.reader(output)
        return {**answer, "slots": split_slots(answer["label"], self.slot_names)}


class SlotScorer(LabelScorer):
    """Softmax + labels, then the best intent split into its slots."""

    def __init__(self, labels: list[str], slot_names: list[str] | None) -> None:
        super().__init__(labels)
        self.slot_names = list(slot_names) if slot_names else None

    def __call__(self, output: torch.Tensor) -> dict[str, Any]:
        answer = super().__call__(output)
        return {**answer, "slots": split_slots(answer["label"], self.slot_names)}


@dataclass(frozen=True)
class IntentTask(ClassifierTask):
    def example_fields(self, num_outputs: int | None = None) -> dict[str, Any]:
        fields = super().example_fields(num_outputs)
        return fields if num_outputs is not None else {**fields, "slot_names": ["action", "object", "location"]}

    def post_processor(self, adapter_set: AdapterSet) -> SlotScorer | TextFusedSlotScorer:
        config = adapter_set.config
        if config.text_branch is None:
            return SlotScorer(config.labels or [], config.slot_names)
        from elp.text_intent.branch import TranscriptIntentReader

        branch = adapter_set.text_branch
        reader = TranscriptIntentReader(config.labels or [], config.text_branch.vocab, branch.classifier(),
                                        config.text_branch.text_weight, branch.language_model)
        return TextFusedSlotScorer(reader, config.slot_names)

    def answer_field_definitions(self) -> dict[str, Any]:
        slots = (dict[str, str] | None, Field(None, description="slot values when intents are slot_slot_slot"))
        transcript = (str | None, Field(None, description="what the set's text branch read (the ASR set's best "
                                                          "path on the same encoder pass), when it has one"))
        return {**super().answer_field_definitions(), "slots": slots, "transcript": transcript}

    def respond(self, request: TaskRequest) -> dict[str, Any]:
        answer = super().respond(request)
        if request.rows[0].slots is not None:
            answer["slots"] = request.rows[0].slots
        if request.rows[0].text is not None:
            answer["transcript"] = request.rows[0].text
        return answer


INTENT = IntentTask(
    name="intent", route="/intent", default_adapter="intent-default", activation="gelu",
    summary="Recognise the spoken command's intent (and its slots when the set defines them).",
    class_noun="intent", label_field="intent", typical_outputs=31, supports_text_branch=True,
    example_labels=("activate_lights_kitchen", "deactivate_lights_kitchen", "increase_volume_none"),
    training=TrainingRecipe(paper_rates=(5e-4, 1e-5, 1e-5)),
)
