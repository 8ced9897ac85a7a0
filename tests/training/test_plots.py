"""Each plot writes a valid, non-empty PNG (content is checked by eye in reports)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from training.metrics import confusion_matrix
from training.plots import plot_confusion_matrix, plot_det_curve, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert float(img[..., :3].std()) > 0.0  # something was drawn


def test_training_curves_with_sparse_validation(tmp_path: Path) -> None:
    history: list[dict[str, object]] = [
        {"step": s, "train_loss": 3.0 / (1 + s / 100)} for s in range(0, 1000, 50)
    ]
    history += [
        {"step": s, "valid_loss": 2.0 / (1 + s / 200), "valid_wer": 0.9 - s / 2000} for s in (250, 500, 750)
    ]
    history.append({"step": 999, "note": "finished", "lr": 1e-4})
    out = plot_training_curves(history, tmp_path / "sub" / "curves.png", title="asr")
    assert out == tmp_path / "sub" / "curves.png"
    _assert_png(out)


def test_training_curves_losses_only_by_epoch(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1)} for e in range(5)]
    _assert_png(plot_training_curves(history, tmp_path / "c.png", x_key="epoch"))


def test_confusion_matrix_heatmap(tmp_path: Path) -> None:
    labels = ["neu", "hap", "ang", "sad"]
    cm = confusion_matrix(
        ["neu", "neu", "hap", "ang", "sad", "sad"], ["neu", "hap", "hap", "ang", "neu", "sad"], labels
    )
    _assert_png(plot_confusion_matrix(cm, labels, tmp_path / "cm.png", title="IEMOCAP fold 1"))
    _assert_png(plot_confusion_matrix(cm, labels, tmp_path / "cm_counts.png", normalize=False))
    with pytest.raises(ValueError):
        plot_confusion_matrix(cm, labels[:3], tmp_path / "bad.png")


def test_det_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1, 1, 500), rng.normal(-1, 1, 500)])
    labels = np.concatenate([np.ones(500), np.zeros(500)])
    _assert_png(plot_det_curve(scores, labels, tmp_path / "det.png", name="ecapa-adapter"))
    # perfectly separable tiny set: rates of exactly 0 and 1 must not break the probit axes
    _assert_png(plot_det_curve([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], tmp_path / "det_perfect.png"))
    with pytest.raises(ValueError):
        plot_det_curve([0.1, 0.2], [1, 1], tmp_path / "bad.png")
