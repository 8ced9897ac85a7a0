"""Spoken language identification: an utterance classifier over the set's language codes.

``language-default`` scores de, en, es, fr, it, ru (ISO 639-1); a set may carry any codes. A set may
also be a Whisper checkpoint's own decoder reading its language tokens (``language-whisper``, converted
at setup, not trained, with ``language-default``'s head beside it). That one is the default where the store
has it: on real validation voices no set trained on it is right on 75.8% of clips against 45.8%, at 2.3x the
time a clip (its card); without the setup conversion ``language-default`` answers."""

from elp.tasks.classifier import ClassifierTask

LANGUAGE = ClassifierTask(
    name="language", route="/language", summary="Identify the spoken language.",
    default_adapter="language-whisper", fallback_adapters=("language-default",), activation="relu",
    class_noun="language",
    example_labels=("en", "es", "fr"),
    supports_decoder=True,  # a Whisper decoder scores its language tokens (elp.convert.whisper_decoder_set --labels)
    default_at_start=False,  # language-whisper holds a ~100 MB decoder (~190 MB resident): paid by those who call
)
