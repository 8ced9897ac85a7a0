"""The language-ID task comes from its registry module alone: a tiny set of it builds, saves, loads
and answers a label and scores over its languages, beside another task in one mixed batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.tasks import get_task, task_for_endpoint
from elp.testing import make_random_adapter_set, outputs_per_row, save_tiny_backbone, seeded_waveform

LANGUAGES = ["de", "en", "es", "fr", "it", "ru"]


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory):
    return load_backbone(save_tiny_backbone(tmp_path_factory.mktemp("whisper"), "whisper"))


def test_language_is_registered_with_its_route_and_default() -> None:
    spec = get_task("language")
    assert task_for_endpoint("language") is spec
    assert (spec.route, spec.default_adapter, spec.headline_metric) == ("/language", "language-whisper", "accuracy")
    assert spec.fallback_adapters == ("language-default",)


def test_a_tiny_language_set_answers_a_label_and_scores(whisper, tmp_path: Path) -> None:
    adapter_set = make_random_adapter_set(whisper, "language", method="l", labels=LANGUAGES, seed=3)
    loaded = AdapterSet.load(adapter_set.save(tmp_path / "language"))
    assert loaded.task == "language" and loaded.config.labels == LANGUAGES
    model = MultiAdapterModel(whisper)
    model.add_adapter_set("lang", loaded)
    model.add_adapter_set("emo", make_random_adapter_set(whisper, "emotion", method="l", seed=4))
    waves = [seeded_waveform(1.0, seed=1), seeded_waveform(0.6, seed=2)]
    first, second = model.predict(waves, ["lang", "emo"])
    assert first.task == "language" and first.label in LANGUAGES
    assert set(first.scores) == set(LANGUAGES) and sum(first.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert first.label == max(first.scores, key=first.scores.get)
    assert second.task == "emotion"
    # the language row's answer does not depend on the other row of the mixed batch
    alone = outputs_per_row(model, waves[:1], ["lang"])[0]
    mixed = outputs_per_row(model, waves, ["lang", "emo"])[0]
    torch.testing.assert_close(alone, mixed, atol=1e-4, rtol=1e-4)
