"""Emotion recognition: an utterance classifier over the set's emotion labels."""

from elp.tasks.classifier import ClassifierTask

EMOTION = ClassifierTask(
    name="emotion", route="/emotion", summary="Classify the speaker's emotion.", default_adapter="emotion-default",
    activation="relu", class_noun="emotion", example_labels=("neutral", "happy", "sad", "angry"),
)
