"""A task registered only here trains, refits and evaluates with no edit in training/: elp-train,
the cached refit and elp-evaluate read everything task-specific from the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from elp import AdapterSet
from elp.tasks import TASKS, register, task_names
from elp.tasks.classifier import ClassifierTask

SR = 16000
TONE = ClassifierTask(name="tone", route="/tone", summary="Low or high voice.", default_adapter="tone-default",
                      activation="relu", class_noun="tone", example_labels=("low", "high"))


@pytest.fixture
def tone_task():
    register(TONE)
    yield TONE
    TASKS.remove(TONE)


@pytest.fixture
def tone_corpus(tmp_path):
    """A tiny corpus of the new task: its manifest is ``tone.jsonl``, classes carried by pitch."""
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", 8), ("valid", 4), ("test", 4)):
        for i in range(count):
            label = ("low", "high")[i % 2]
            t = np.arange(int(rng.uniform(0.5, 0.8) * SR)) / SR
            pitch = 110.0 if label == "low" else 330.0
            wave = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)
            path = f"audio/tone-{split}-{i}.wav"
            sf.write(root / path, wave.astype(np.float32), SR)
            rows.append({"id": f"tone-{split}-{i}", "path": path, "duration_s": round(t.size / SR, 3), "split": split,
                         "task": "tone", "speaker": f"s{i % 3}", "text": None, "label": label, "meta": {}})
    (root / "tone.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow
def test_a_task_registered_elsewhere_trains_refits_and_evaluates(tone_task, tone_corpus, tiny_store, tmp_path):
    from training import cached, evaluate, train

    assert "tone" in task_names()
    backbone = str(tiny_store[0])
    argv = ["--task", "tone", "--backbone", backbone, "--corpus", str(tone_corpus), "--out", str(tmp_path / "set"),
            "--run-dir", str(tmp_path / "run"), "--batch-size", "4", "--num-workers", "0", "--eval-every", "2",
            "--prompt-frames", "2", "--max-steps", "4", "--test", "--quiet", "--device", "cpu"]
    result = train.train(train.build_parser().parse_args(argv))
    trained = AdapterSet.load(result.output)
    assert trained.task == "tone" and trained.config.labels == ["high", "low"]
    assert set(trained.config.metrics["valid"]) >= {"accuracy", "unweighted_accuracy"}
    assert trained.config.head.hidden_dim == TONE.head_hidden_dim
    assert [h["step"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [2, 4]

    cached.main([result.output, "--out", str(tmp_path / "refit"), "--backbone", backbone,
                 "--corpus", str(tone_corpus), "--epochs", "2", "--batch-size", "4"])
    refit = AdapterSet.load(tmp_path / "refit")
    assert refit.config.training["refit"]["label_smoothing"] == cached.LABEL_SMOOTHING
    assert set(refit.config.metrics) == {"valid", "test", "before_refit"}

    out = tmp_path / "eval.json"
    evaluate.main([str(tmp_path / "refit"), "--backbone", backbone, "--corpus", str(tone_corpus), "--out", str(out),
                   "--plots", str(tmp_path / "plots"), "--device", "cpu"])
    record = json.loads(out.read_text())[0]
    assert record["task"] == "tone" and record["num_clips"] == 4
    assert record["accuracy"] == pytest.approx(refit.config.metrics["test"]["accuracy"])
