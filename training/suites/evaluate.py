"""``elp-evaluate --suite``: every adapter set on near / far / human data side by side.

* near: the generated corpus' test split (``--corpus``); for intent also the held-out phrasing
  family spoken by the corpus' test voices (``data/phrasings``);
* far: Kokoro voices (``data/far``), a synthesiser family no training clip comes from;
* human: real people (``data/human``); ASR also on the telephone-band copy of the same prompts;
  verification also on the valid speakers' trials (the calibration data: reported, never tuned here).

Verification reports, at the set's served threshold (``adapter_config.json``), the share of
impostor pairs accepted and of genuine pairs rejected. ``--baselines`` adds full Whisper base
``generate``, pocketsphinx and resemblyzer on capped, evenly spread subsets of the same clips and
trials, with the set re-scored on exactly those; resemblyzer's threshold is its EER point on the
human valid trials (validation data only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch.nn.functional as F

from elp import MultiAdapterModel
from elp.config import AdapterSetConfig
from elp.tasks import get_task
from elp.tasks.verification import served_threshold
from training.data.manifest import ManifestRow, filter_split, read_manifest, read_trials
from training.dataset import load_audio
from training.evaluation import gated_trials, predict_rows, trial_clip_rows
from training.metrics import (
    cer,
    clip_errors,
    clip_rate,
    compute_eer,
    label_errors,
    unweighted_accuracy,
    verification_metrics,
    weighted_accuracy,
    wer,
)
from training.suites import baselines as B

SUITES = ("near", "far", "human")


@dataclass(frozen=True)
class DataSet:
    """One evaluation set: which suite column it fills, and which row qualifier it carries."""

    name: str
    suite: str  # near | far | human: the column
    variant: str  # "" or a row qualifier ("telephone band", "held-out phrasings")
    folder: str  # key of the folder map: corpus | far | human | phrasings
    manifest: str
    split: str | None = None  # keep only this split (the corpus' test split)
    trials: str | None = None  # verification trial list in the folder
    leave_out_seen: bool = False  # held-out phrasings: leave out those a shipped set was trained on


def scored_rows(data: DataSet, rows: list[ManifestRow]) -> tuple[list[ManifestRow], int]:
    """The rows a figure is computed on, and how many were left out: a held-out phrasing family's clips whose
    text a shipped set heard in training (``training.suites.phrasings.SEEN_IN_TRAINING``) do not count."""
    rows = filter_split(rows, data.split) if data.split else rows
    if not data.leave_out_seen:
        return rows, 0
    from training.suites.phrasings import SEEN_IN_TRAINING

    kept = [r for r in rows if (r.text or "").strip() not in SEEN_IN_TRAINING]
    return kept, len(rows) - len(kept)


DATASETS: dict[str, tuple[DataSet, ...]] = {
    "asr": (DataSet("near", "near", "", "corpus", "asr.jsonl", "test"),
            DataSet("far", "far", "", "far", "asr.jsonl"),
            DataSet("human", "human", "", "human", "asr.jsonl"),
            DataSet("human-phone", "human", "telephone band", "human", "asr_phone.jsonl")),
    # human-valid first: resemblyzer's threshold is calibrated on it before any test trial is scored
    "verification": (DataSet("human-valid", "human", "valid speakers, calibration data", "human", "verification.jsonl",
                             trials="verification_trials_valid.txt"),
                     DataSet("near", "near", "", "corpus", "verification.jsonl", trials="verification_trials_test.txt"),
                     DataSet("far", "far", "", "far", "verification.jsonl", trials="verification_trials_test.txt"),
                     DataSet("human", "human", "", "human", "verification.jsonl",
                             trials="verification_trials_test.txt")),
    "intent": (DataSet("near", "near", "corpus test phrasings", "corpus", "intent.jsonl", "test"),
               DataSet("near-phrasings", "near", "held-out phrasings", "phrasings", "intent.jsonl",
                       leave_out_seen=True),
               DataSet("far-phrasings", "far", "held-out phrasings", "far", "intent.jsonl", leave_out_seen=True)),
    "emotion": (DataSet("near", "near", "", "corpus", "emotion.jsonl", "test"),
                DataSet("far", "far", "", "far", "emotion.jsonl")),
}


def datasets_for(task: str) -> tuple[DataSet, ...]:
    """The suite data sets of a task: those listed above, else the corpus' test split and the far and
    human suites' ``<task>.jsonl`` (each skipped, and noted, where it is not built)."""
    if task in DATASETS:
        return DATASETS[task]
    manifest = f"{task}.jsonl"
    return (DataSet("near", "near", "", "corpus", manifest, "test"), DataSet("far", "far", "", "far", manifest),
            DataSet("human", "human", "", "human", manifest))


@dataclass
class Options:
    folders: dict[str, Path]  # corpus | far | human | phrasings -> folder
    suites: tuple[str, ...]
    baselines: list[str]
    whisper_dir: str
    device: str = "cpu"
    baseline_clips: int = 80
    baseline_trials: int = 1000
    max_clips: int = 0  # 0: every clip of a set (ours)


def spread(items: list, count: int) -> list:
    """``count`` items evenly spread over the list (all of them when count is 0 or larger)."""
    if not count or count >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _record(key: str, task: str, system: str, data: DataSet, subset: bool, **metrics: Any) -> dict:
    return {"set": key, "task": task, "system": system, "data": data.name, "suite": data.suite,
            "variant": data.variant, "subset": subset, **metrics}


def asr_records(model: MultiAdapterModel, key: str, data: DataSet, rows: list[ManifestRow], options: Options,
                baseline_systems: dict) -> list[dict]:
    task = model.adapter_sets[key].config.task
    predictions, _ = predict_rows(model, key, rows)
    refs = [r.text or "" for r in rows]
    hyps = [predictions[r.id].text or "" for r in rows]
    words, chars = clip_errors(refs, hyps, "word"), clip_errors(refs, hyps, "char")
    per_clip = {"ids": [r.id for r in rows], "word": words.tolist(), "char": chars.tolist()}  # for the report's pairs
    out = [_record(key, task, "ours", data, False, cer=clip_rate(chars), wer=clip_rate(words), n=len(rows),
                   per_clip=per_clip)]
    if baseline_systems:
        picked = spread(list(range(len(rows))), options.baseline_clips)
        sub_refs = [refs[i] for i in picked]
        out.append(_record(key, task, "ours", data, True, cer=cer(sub_refs, [hyps[i] for i in picked]),
                           wer=wer(sub_refs, [hyps[i] for i in picked]), n=len(picked)))
        waves = [load_audio(rows[i].path) for i in picked]
        for name, system in baseline_systems.items():
            base = [system(w) for w in waves]
            out.append(_record(key, task, name, data, True, cer=cer(sub_refs, base), wer=wer(sub_refs, base),
                               n=len(picked)))
    return out


def _rates(scores: np.ndarray, labels: np.ndarray, threshold: float | np.ndarray) -> dict[str, float]:
    """What /verify would answer at ``threshold`` (one, or each trial's): impostors accepted, genuine pairs
    rejected."""
    accept = scores >= threshold
    return {"false_accept": float(accept[labels == 0].mean()), "false_reject": float((~accept[labels == 1]).mean())}


def served_thresholds(config: AdapterSetConfig, trials: list) -> np.ndarray | None:
    """The threshold /verify applies to each trial: the set's duration table at the shorter clip's duration,
    else its single threshold; None for a set with neither (the deployment would choose)."""
    if config.threshold is None and not config.duration_thresholds:
        return None
    seconds = {p: sf.info(p).duration for p in {p for t in trials for p in (t.path_a, t.path_b)}}
    return np.array([served_threshold(config, {}, min(seconds[t.path_a], seconds[t.path_b])) for t in trials])


def _cosines(embed: dict[str, np.ndarray], trials: list) -> np.ndarray:
    unit = {p: e / max(float(np.linalg.norm(e)), 1e-12) for p, e in embed.items()}
    return np.array([float(unit[t.path_a] @ unit[t.path_b]) for t in trials])


def verification_records(model: MultiAdapterModel, key: str, data: DataSet, trials: list, options: Options,
                         baseline_systems: dict, calibrated: dict[str, float]) -> list[dict]:
    """Our set's metrics on all trials; with baselines, every system on the same trial subset."""
    task = model.adapter_sets[key].config.task
    predictions, _ = predict_rows(model, key, trial_clip_rows(trials, task))
    scores = np.array([float(F.cosine_similarity(predictions[t.path_a].embedding, predictions[t.path_b].embedding,
                                                 dim=0)) for t in trials])
    labels = np.array([t.label for t in trials])
    config = model.adapter_sets[key].config
    served = served_thresholds(config, trials)
    metrics: dict[str, Any] = {**verification_metrics(scores, labels), "n": len(trials)}
    if served is not None:
        metrics.update(_rates(scores, labels, served), threshold=config.threshold,
                       by_duration=bool(config.duration_thresholds))
    out = [_record(key, task, "ours", data, False, **metrics)]
    if not baseline_systems:
        return out
    picked = spread(list(range(len(trials))), options.baseline_trials)
    subset = [trials[i] for i in picked]
    sub_labels = labels[picked]
    ours = {"eer": compute_eer(scores[picked], sub_labels).eer, "n": len(subset)}
    out.append(_record(key, task, "ours", data, True,
                       **ours, **(_rates(scores[picked], sub_labels, served[picked]) if served is not None else {})))
    paths = sorted({p for t in subset for p in (t.path_a, t.path_b)})
    for name, system in baseline_systems.items():
        embed = {p: np.asarray(system(load_audio(p)), dtype=np.float64) for p in paths}
        base = _cosines(embed, subset)
        eer = compute_eer(base, sub_labels)
        if data.name == "human-valid":
            calibrated[name] = eer.threshold  # the only place a baseline threshold is chosen
        record = {"eer": eer.eer, "n": len(subset)}
        if name in calibrated:
            record.update(_rates(base, sub_labels, calibrated[name]), threshold=calibrated[name])
        out.append(_record(key, task, name, data, True, **record))
    return out


def label_records(model: MultiAdapterModel, key: str, task: str, data: DataSet, rows: list[ManifestRow]) -> list:
    predictions, _ = predict_rows(model, key, rows)
    truth = [r.label for r in rows]
    guess = [predictions[r.id].label for r in rows]
    per_clip = {"ids": [r.id for r in rows], "label": label_errors(truth, guess).tolist()}
    return [_record(key, task, "ours", data, False, accuracy=weighted_accuracy(truth, guess),
                    unweighted_accuracy=unweighted_accuracy(truth, guess), n=len(rows), per_clip=per_clip)]


def evaluate_on_suites(model: MultiAdapterModel, key: str, options: Options,
                       log=lambda line: print(line, flush=True)) -> list[dict]:
    """Every data set of the set's task in the chosen suites; missing suite folders are noted, not fatal."""
    task = model.adapter_sets[key].config.task
    evaluation = get_task(task).evaluation  # transcripts, trials or labels
    systems: dict = {}
    if options.baselines and evaluation == "transcripts":
        systems = B.asr_baselines(options.baselines, options.whisper_dir, options.device)
    elif options.baselines and evaluation == "trials":
        systems = B.speaker_baselines(options.baselines, options.device)
    calibrated: dict[str, float] = {}
    records: list[dict] = []
    for data in datasets_for(task):
        if data.suite not in options.suites and not (data.name == "human-valid" and "human" in options.suites):
            continue
        folder, done = options.folders[data.folder], len(records)
        manifest = folder / data.manifest
        if not manifest.is_file() or (data.trials and not (folder / data.trials).is_file()):
            log(f"{key}: {data.name}: {manifest} (or its trials) is not built; skipped")
            records.append(_record(key, task, "ours", data, False, missing=str(manifest)))
            continue
        if evaluation == "trials":
            # trials on clips the server refuses as silent have no served answer (verification's speech gate)
            trials, silent = gated_trials(read_trials(folder / str(data.trials)), task)
            if silent:
                log(f"{key}: {data.name}: {silent} trials on silent clips left out (the server refuses them)")
            records += verification_records(model, key, data, spread(trials, 4 * options.max_clips), options,
                                            systems, calibrated)
        else:
            rows, left_out = scored_rows(data, read_manifest(manifest))
            if left_out:
                log(f"{key}: {data.name}: {left_out} clips of phrasings a shipped set was trained on left out")
            rows = spread(rows, options.max_clips)
            records += (asr_records(model, key, data, rows, options, systems) if evaluation == "transcripts"
                        else label_records(model, key, task, data, rows))
        for record in records[done:]:
            log(f"{key}: {data.name}: " + str({k: round(v, 4) if isinstance(v, float) else v
                                              for k, v in record.items() if k not in ("set", "task", "data",
                                                                                         "per_clip")}))
    return records
