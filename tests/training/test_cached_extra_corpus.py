"""``training.cached --extra-corpus``: more training and validation clips from another folder, its test never read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from elp import AdapterSet, load_backbone
from elp.testing import make_random_adapter_set, save_tiny_backbone

SR = 16000
LABELS = ["activate_lights_kitchen", "deactivate_lights_kitchen", "increase_volume_none"]
PITCH = {"activate_lights_kitchen": 120.0, "deactivate_lights_kitchen": 240.0, "increase_volume_none": 400.0}


def _write_corpus(root, prefix: str, counts: dict[str, int], seed: int, labels=LABELS) -> None:
    """Intent-like classes carried by pitch (tones), so a tiny set can learn them."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True)
    rows = []
    for split, count in counts.items():
        for i in range(count):
            label = labels[i % len(labels)]
            path = f"audio/{prefix}-{split}-{i}.wav"
            t = np.arange(int(rng.uniform(0.5, 0.8) * SR)) / SR
            wave = np.sin(2 * np.pi * PITCH.get(label, 300.0) * rng.uniform(0.97, 1.03) * t)
            sf.write(root / path, (0.3 * wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32), SR)
            rows.append({"id": f"{prefix}-{split}-{i}", "path": path, "duration_s": float(t[-1]), "split": split,
                         "task": "intent", "speaker": f"s{i % 2}", "text": "x", "label": label, "meta": {}})
    (root / "intent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra")
    backbone = save_tiny_backbone(root / "whisper", "whisper")
    _write_corpus(root / "corpus", "main", {"train": 6, "valid": 3, "test": 3}, 0)
    _write_corpus(root / "para", "para", {"train": 6, "valid": 3, "test": 3}, 1)
    make_random_adapter_set(load_backbone(backbone), "intent", labels=LABELS, seed=0).save(root / "set")
    return root, backbone


@pytest.mark.slow
def test_extra_corpus_joins_train_and_valid_and_its_test_rows_are_never_encoded(setup, tmp_path, monkeypatch,
                                                                                 capsys):
    from training import cached, feature_cache

    root, backbone = setup
    encoded: list[str] = []
    real_encode = feature_cache.encode_rows

    def spy(model, rows, *args, **kwargs):
        encoded.extend(r.path for r in rows)
        return real_encode(model, rows, *args, **kwargs)

    monkeypatch.setattr(feature_cache, "encode_rows", spy)
    cached.main([str(root / "set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone),
                 "--corpus", str(root / "corpus"), "--extra-corpus", str(root / "para"), "--epochs", "2",
                 "--batch-size", "4", "--augmented-views", "1"])
    assert not [p for p in encoded if "/para-test-" in p]
    # clean pass of both corpora + one augmented view of both training splits
    assert sum("/para-train-" in p for p in encoded) == 12 and sum("/main-train-" in p for p in encoded) == 12
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    epochs = [line for line in lines if "epoch" in line]
    by_source = epochs[0]["valid_accuracy_by_source"]
    assert set(by_source) == {"corpus", str(root / "para")}
    assert epochs[0]["valid_accuracy"] == pytest.approx(sum(by_source.values()) / 2)
    refit = AdapterSet.load(tmp_path / "refit").config
    record = refit.training["refit"]
    assert record["extra_corpora"][0]["train"] == 6 and record["extra_corpora"][0]["valid"] == 3
    assert "mean" in record["selected_by"]
    assert set(refit.metrics["valid_extra"]) == {str(root / "para")}
    assert refit.metrics["test"]["accuracy"] is not None  # the test split is the main corpus'


def test_extra_corpus_with_a_label_the_set_lacks_is_refused(setup, tmp_path):
    from training import cached

    root, backbone = setup
    _write_corpus(tmp_path / "odd", "odd", {"train": 2}, 2, labels=["bring_socks_none"])
    with pytest.raises(SystemExit, match="labels the set does not have"):
        cached.main([str(root / "set"), "--out", str(tmp_path / "refit"), "--backbone", str(backbone),
                     "--corpus", str(root / "corpus"), "--extra-corpus", str(tmp_path / "odd"), "--epochs", "1"])
