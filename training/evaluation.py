"""Test-set metrics for one adapter set: WER/CER, EER/minDCF, weighted/unweighted accuracy."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from elp import MultiAdapterModel
from elp.model_outputs import Prediction
from elp.speech_activity import evaluation_gate
from elp.tasks import get_task
from training.data.manifest import ManifestRow, Trial
from training.dataset import SAMPLE_RATE, load_audio
from training.metrics import (
    clip_errors,
    clip_rate,
    confusion_matrix,
    label_errors,
    unweighted_accuracy,
    verification_metrics,
    weighted_accuracy,
)


def length_batches(rows: Sequence[ManifestRow], batch_size: int) -> list[list[ManifestRow]]:
    """Rows sorted by duration, in batches of ``batch_size``: little padding per batch."""
    ordered = sorted(rows, key=lambda r: r.duration_s)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def predict_waveforms(model: MultiAdapterModel, key: str, waveforms: Sequence[np.ndarray],
                      batch_size: int = 16) -> list[Prediction]:
    """Predictions of ``key`` for 16 kHz clips, in their order, run in batches of similar length. A clip
    without a voice gets its task's ``silence_answer`` without the model, as the server answers it."""
    task = model.adapter_sets[key].task_spec
    gate = evaluation_gate(task.silence_gate)
    predictions: list[Prediction | None] = [None] * len(waveforms)
    order = sorted(range(len(waveforms)), key=lambda i: waveforms[i].size)
    if gate is not None:
        for i in order:
            if not gate.has_speech(waveforms[i], SAMPLE_RATE):
                predictions[i] = Prediction(task.name, key, **dict(task.silence_answer or ()))
        order = [i for i in order if predictions[i] is None]
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        answers = model.predict([torch.from_numpy(waveforms[i]) for i in chunk], [key] * len(chunk))
        for i, prediction in zip(chunk, answers, strict=True):
            predictions[i] = prediction
    return predictions  # type: ignore[return-value]


def predict_rows(model: MultiAdapterModel, key: str, rows: Sequence[ManifestRow], batch_size: int = 16):
    """Predictions for each row id (:func:`predict_waveforms`, audio read a batch at a time); also returns
    seconds of compute."""
    was_training = model.training
    model.eval()
    results = {}
    started = time.perf_counter()
    for batch in length_batches(rows, batch_size):
        waves = [load_audio(r.path) for r in batch]
        for row, prediction in zip(batch, predict_waveforms(model, key, waves, batch_size), strict=True):
            results[row.id] = prediction
    elapsed = time.perf_counter() - started
    model.train(was_training)
    return results, elapsed


def trials_from_rows(rows: Sequence[ManifestRow], max_trials: int = 2000, seed: int = 0) -> list[Trial]:
    """Balanced target/non-target pairs when a split has no trial list."""
    generator = torch.Generator().manual_seed(seed)
    by_speaker: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_speaker.setdefault(row.speaker, []).append(row)
    everyone = sorted(by_speaker)
    repeated = [s for s in everyone if len(by_speaker[s]) >= 2]
    if not repeated or len(everyone) < 2:
        raise ValueError("verification needs a speaker with two clips and two speakers to build trials")

    def pick(n: int) -> int:
        return int(torch.randint(n, (1,), generator=generator))

    trials: list[Trial] = []
    for i in range(max_trials):
        if i % 2 == 0:
            clips = by_speaker[repeated[pick(len(repeated))]]
            x, y = pick(len(clips)), pick(len(clips) - 1)
            trials.append(Trial(1, clips[x].path, clips[y + (y >= x)].path))
        else:
            a = pick(len(everyone))
            b = (a + 1 + pick(len(everyone) - 1)) % len(everyone)
            clip_a, clip_b = by_speaker[everyone[a]], by_speaker[everyone[b]]
            trials.append(Trial(0, clip_a[pick(len(clip_a))].path, clip_b[pick(len(clip_b))].path))
    return trials


def gated_trials(trials: Sequence[Trial], task: str = "verification") -> tuple[list[Trial], int]:
    """The trials whose two clips pass the task's speech gate (``TaskSpec.speech_gate``), and how many
    were left out: the server refuses a silent clip (``422 no_speech``), so no served answer exists for
    such a trial and no figure counts one."""
    gate = evaluation_gate(get_task(task).speech_gate)
    if gate is None:
        return list(trials), 0
    paths = {p for t in trials for p in (t.path_a, t.path_b)}
    speech = {p: gate.has_speech(load_audio(p), SAMPLE_RATE) for p in sorted(paths)}
    kept = [t for t in trials if speech[t.path_a] and speech[t.path_b]]
    return kept, len(trials) - len(kept)


def trial_clip_rows(trials: Sequence[Trial], task: str = "verification") -> list[ManifestRow]:
    """One row per distinct clip of a trial list, id = path, so each clip is embedded once."""
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
    return [ManifestRow(id=p, path=p, duration_s=0.0, split="test", task=task, speaker="?") for p in paths]


def evaluate_set(
    model: MultiAdapterModel,
    key: str,
    rows: Sequence[ManifestRow],
    trials: Sequence[Trial] | None = None,
    batch_size: int = 16,
) -> dict:
    """Metrics of the set ``key`` on ``rows`` (and ``trials`` for a task scored on trials), computed
    the task's evaluation way: trials, transcripts or labels."""
    task = model.adapter_sets[key].config.task
    evaluation = get_task(task).evaluation
    if evaluation == "trials":
        trials, silent = gated_trials(trials if trials else trials_from_rows(rows), task)
        predictions, seconds = predict_rows(model, key, trial_clip_rows(trials, task), batch_size)
        scores = [float(F.cosine_similarity(predictions[t.path_a].embedding, predictions[t.path_b].embedding, dim=0))
                  for t in trials]
        labels = [t.label for t in trials]
        metrics = verification_metrics(scores, labels)
        metrics.update(num_trials=len(trials), num_trials_silent=silent, compute_seconds=seconds)
        metrics["_scores"] = scores
        metrics["_labels"] = labels
        return metrics
    predictions, seconds = predict_rows(model, key, rows, batch_size)
    if evaluation == "transcripts":
        refs = [r.text or "" for r in rows]
        hyps = [predictions[r.id].text or "" for r in rows]
        words, chars = clip_errors(refs, hyps, "word"), clip_errors(refs, hyps, "char")
        return {"wer": clip_rate(words), "cer": clip_rate(chars), "num_clips": len(rows), "compute_seconds": seconds,
                "_examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps, strict=True))[:10]],
                "_clip_errors": {"ids": [r.id for r in rows], "word": words, "char": chars}}
    truth = [r.label for r in rows]
    guess = [predictions[r.id].label for r in rows]
    labels = model.adapter_sets[key].config.labels or []
    return {
        "accuracy": weighted_accuracy(truth, guess),
        "unweighted_accuracy": unweighted_accuracy(truth, guess),
        "num_clips": len(rows),
        "compute_seconds": seconds,
        "_confusion": confusion_matrix(truth, guess, labels=labels).tolist(),
        "_labels": labels,
        "_clip_errors": {"ids": [r.id for r in rows], "label": label_errors(truth, guess)},
    }


def headline(task: str, metrics: dict) -> tuple[str, float, bool]:
    """(name, value, higher_is_better) of the metric that selects checkpoints for a task."""
    spec = get_task(task)
    return spec.headline_metric, metrics[spec.headline_metric], spec.higher_is_better


def public(metrics: dict) -> dict:
    """Metrics without the bulky underscore-prefixed arrays kept for plots."""
    return {k: v for k, v in metrics.items() if not k.startswith("_")}
