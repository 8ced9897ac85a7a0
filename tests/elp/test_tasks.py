"""The task registry: one spec per task, found by name and route, importable without torch, and the
one place that knows what each task needs of a config."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from elp import AdapterSetConfig, ConfigError
from elp.tasks import TASKS, get_task, register, task_for_endpoint, task_names
from elp.tasks.classifier import ClassifierTask
from elp.tasks.intent import split_slots

IDENTITY = {"model_type": "whisper", "hidden_size": 32, "num_layers": 3, "fingerprint": "-"}


def test_the_registered_tasks_and_their_routes() -> None:
    assert task_names()[:4] == ("asr", "verification", "emotion", "intent")
    assert [spec.route for spec in TASKS][:4] == ["/asr", "/verify", "/emotion", "/intent"]
    assert task_for_endpoint("verify") is get_task("verification")
    assert [get_task(name).default_adapter for name in task_names()[:4]] == [
        "asr-default", "verify-default", "emotion-default", "intent-default"]


def test_an_unknown_task_and_a_clashing_registration_are_refused() -> None:
    with pytest.raises(ConfigError, match="task must be one of"):
        get_task("dictation")
    with pytest.raises(ConfigError, match="clashes"):
        register(ClassifierTask(name="emotion", route="/emotion2", summary="", default_adapter="x", activation="relu"))
    with pytest.raises(ConfigError, match="clashes"):
        register(ClassifierTask(name="mood", route="/emotion", summary="", default_adapter="x", activation="relu"))
    assert "mood" not in task_names()


def test_the_registry_and_answer_models_import_without_torch() -> None:
    code = ("import sys, elp.tasks as t; [s.answer_fields for s in t.TASKS]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("task", "missing", "message"), [
    ("asr", {}, "CTC vocabulary"),
    ("emotion", {}, "class labels"),
    ("intent", {"labels": ["a_b"], "slot_names": ["x", "y", "z"]}, "does not split"),
])
def test_each_task_validates_what_its_sets_need(task: str, missing: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AdapterSetConfig(task=task, backbone=IDENTITY, **missing)


def test_only_a_task_that_supports_it_may_carry_a_language_model() -> None:
    from elp.decoding import LanguageModelConfig

    lm = LanguageModelConfig(num_words=3, num_word_bytes=3, num_bigrams=0)
    AdapterSetConfig(task="asr", backbone=IDENTITY, vocab=["<blank>", "a"], language_model=lm)
    with pytest.raises(ConfigError, match="cannot carry a language model"):
        AdapterSetConfig(task="emotion", backbone=IDENTITY, labels=["a"], language_model=lm)


def test_classifier_post_processing_gives_label_scores_and_slots() -> None:
    labels = ["activate_lights_kitchen", "increase_volume_none"]
    config = AdapterSetConfig(task="intent", backbone=IDENTITY, labels=labels, slot_names=["a", "o", "l"])

    class _Set:  # the post-processor reads only the config
        pass

    adapter_set = _Set()
    adapter_set.config = config
    answer = get_task("intent").post_processor(adapter_set)(torch.tensor([0.0, 2.0]))
    assert answer["label"] == "increase_volume_none"
    assert answer["slots"] == {"a": "increase", "o": "volume", "l": "none"}
    assert sum(answer["scores"].values()) == pytest.approx(1.0)
    assert split_slots("a_b", ["x"]) is None


def test_losses_come_from_the_task() -> None:
    spec = get_task("asr")
    loss_fn = spec.build_loss(None, 0)
    log_probs = torch.randn(2, 6, 5).log_softmax(-1)
    value = spec.loss(loss_fn, log_probs, torch.tensor([6, 5]), torch.tensor([1, 2, 3]), torch.tensor([2, 1]))
    assert torch.isfinite(value)
    classifier = get_task("emotion")
    assert classifier.loss(classifier.build_loss(None, 3), torch.zeros(2, 3), torch.tensor([1, 1]),
                           torch.tensor([0, 2])) == pytest.approx(torch.log(torch.tensor(3.0)))
