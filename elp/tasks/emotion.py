"""Emotion recognition: an utterance classifier over the set's emotion labels."""

from elp.tasks.classifier import ClassifierTask
from elp.tasks.recipe import TrainingRecipe

EMOTION = ClassifierTask(
    name="emotion", route="/emotion", summary="Classify the speaker's emotion.", default_adapter="emotion-default",
    activation="relu", class_noun="emotion", example_labels=("neutral", "happy", "sad", "angry"),
    # speed and level perturbation would erase what emotions are made of (rate, pitch, loudness)
    training=TrainingRecipe(augment=(("speed_prob", 0.0), ("gain_db", (-2.0, 2.0)))),
)
