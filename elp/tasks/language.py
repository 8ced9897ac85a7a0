"""Spoken language identification: an utterance classifier over the set's language codes.

``language-default`` scores de, en, es, fr, it, ru (ISO 639-1); a set may carry any codes. A set may
also be a Whisper checkpoint's own decoder reading its language tokens (``language-whisper``, converted
at setup, not trained)."""

from elp.tasks.classifier import ClassifierTask

LANGUAGE = ClassifierTask(
    name="language", route="/language", summary="Identify the spoken language.",
    default_adapter="language-default", activation="relu", class_noun="language",
    example_labels=("en", "es", "fr"),
    supports_decoder=True,  # a Whisper decoder scores its language tokens (elp.convert.whisper_decoder_set --labels)
)
