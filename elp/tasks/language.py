"""Spoken language identification: an utterance classifier over the set's language codes.

``language-default`` scores de, en, es, fr, it, ru (ISO 639-1); a set may carry any codes."""

from elp.tasks.classifier import ClassifierTask

LANGUAGE = ClassifierTask(
    name="language", route="/language", summary="Identify the spoken language.",
    default_adapter="language-default", activation="relu", class_noun="language",
    example_labels=("en", "es", "fr"),
)
