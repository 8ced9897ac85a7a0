"""Figures for training reports: curves, confusion matrices and DET curves, written as PNG.

Uses the non-interactive Agg backend so it works on headless training machines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from training.metrics import compute_eer  # noqa: E402

_DET_TICKS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
# bookkeeping keys that would squash the metric panel's scale
_NOT_METRICS = frozenset({"step", "epoch", "lr", "learning_rate", "time_s", "elapsed_s"})


def _save(fig: plt.Figure, out_path: str | os.PathLike[str]) -> Path:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)  # figures are not garbage-collected while pyplot tracks them
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))


def plot_training_curves(
    history: Sequence[Mapping[str, object]],
    out_path: str | os.PathLike[str],
    x_key: str = "step",
    metric_keys: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Losses (left panel) and validation metrics (right panel) against ``x_key``.

    ``history`` is the training log as a list of dicts, e.g. ``{"step": 100, "train_loss": 1.2}``
    and, every eval, ``{"step": 500, "valid_loss": 1.1, "valid_wer": 0.31}``; keys may be absent
    from some entries. Keys containing ``loss`` go left; every other numeric key except
    bookkeeping (step, epoch, lr, timings), or just ``metric_keys``, goes right.
    """
    keys: list[str] = []
    for entry in history:
        for k, v in entry.items():
            if k != x_key and k not in keys and _is_number(v):
                keys.append(k)
    loss_keys = [k for k in keys if "loss" in k]
    other = (
        [k for k in keys if "loss" not in k and k not in _NOT_METRICS]
        if metric_keys is None
        else list(metric_keys)
    )
    panels = [(loss_keys, "loss")] + ([(other, "metric")] if other else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (names, ylabel) in zip(axes[0], panels, strict=True):
        for k in names:
            pts = [(e[x_key], e[k]) for e in history if x_key in e and k in e and _is_number(e[k])]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=k)
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if names:
            ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, out_path)


def plot_confusion_matrix(
    cm: ArrayLike,
    labels: Sequence[str],
    out_path: str | os.PathLike[str],
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Heatmap with true class on rows; ``normalize`` shows per-row recall (the UA components)
    with raw counts in brackets."""
    counts = np.asarray(cm, dtype=np.float64)
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {n} labels")
    rows = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    hi = shown.max() if shown.size else 0.0
    for i in range(n):
        for j in range(n):
            txt = f"{shown[i, j]:.2f}\n({int(counts[i, j])})" if normalize else f"{int(counts[i, j])}"
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > 0.6 * hi else "black",
            )
    if title:
        ax.set_title(title)
    return _save(fig, out_path)


def plot_det_curve(
    scores: ArrayLike,
    labels: ArrayLike,
    out_path: str | os.PathLike[str],
    name: str | None = None,
    title: str | None = None,
) -> Path:
    """DET curve (miss vs false-alarm rate on normal-deviate axes) with the EER point marked.

    Rates are clipped to [1e-4, 1 - 1e-4] before ``norm.ppf`` so the 0 and 1 endpoints of a
    perfect or tiny trial set stay drawable.
    """
    y = np.asarray(labels).ravel().astype(int)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.min(initial=1) == y.max(initial=0) or s.shape != y.shape:
        raise ValueError("need matching scores/labels with both target (1) and non-target (0) trials")
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    fnr = 1.0 - tpr
    eps = 1e-4
    px, py = norm.ppf(np.clip(fpr, eps, 1 - eps)), norm.ppf(np.clip(fnr, eps, 1 - eps))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(px, py, label=name or "system")
    e = compute_eer(s, y).eer
    pe = norm.ppf(np.clip(e, eps, 1 - eps))
    ax.plot([pe], [pe], "o", color="C3", label=f"EER {100 * e:.2f}%")
    ticks = norm.ppf(_DET_TICKS)
    tick_labels = [f"{100 * t:g}" for t in _DET_TICKS]
    lim = (norm.ppf(eps), norm.ppf(0.9))
    for setter_t, setter_l in ((ax.set_xticks, ax.set_xlim), (ax.set_yticks, ax.set_ylim)):
        setter_t(ticks, labels=tick_labels)
        setter_l(*lim)
    ax.plot(lim, lim, ":", color="grey", linewidth=0.8)
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return _save(fig, out_path)
