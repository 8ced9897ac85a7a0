"""Choose a verification set's served threshold on real-voice validation trials, and report a set (and the
teacher, resemblyzer) on any trial list at that threshold.

Rule (``calibrate``): the lowest threshold at which the validation trials' false-accept rate is at most
``max_far``, provided the false-reject rate there is at most ``max_frr``; otherwise the EER point. A
served "same speaker" answer that accepts impostors is the costly error, and validation speakers are
few, so the threshold keeps a margin on the false-accept side while genuine pairs still pass. Given
several validation populations (``--served-calibrate A B``), the threshold is the strictest of their own
(the highest): every population then accepts at most ``max_far`` of its impostors. Why: a threshold set on
pooled trials follows the larger population, and impostors of another channel (telephone prompts) score
higher than those of the one it was set on.
Scores come from :mod:`training.distill_cache` features (``--eval-only`` shards), so every trial list
costs one encoder pass per clip, whatever the number of sets compared.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from elp import AdapterSet, MultiAdapterModel, load_backbone
from training.data.manifest import read_trials
from training.dataset import load_audio
from training.distill import absolute_key, embed, load_features
from training.evaluation import gated_trials
from training.metrics import compute_eer, verification_metrics
from training.suites.evaluate import served_thresholds

MAX_SAMPLES = 30 * 16000  # the server's default max_duration_s
SPEECH_ONLY = [False]  # set by --speech-only for every trial list read here


def read_speech_trials(trials_file: str, speech_only: bool) -> list:
    """The trial list, without trials on clips the served task refuses as silent when ``speech_only``
    (``training.evaluation.gated_trials``: the prompt packages ship digital silence files, ``silence-N``,
    that the human suite lists as a speaker's clips; two of them score 1.0 for any two "speakers")."""
    trials = read_trials(trials_file)
    return gated_trials(trials)[0] if speech_only else trials


@functools.lru_cache(maxsize=16)
def served_trials(trials_file: str, speech_only: bool) -> tuple:
    """``read_speech_trials`` once per list in a run: the speech gate reads every clip, and both the served
    scores and the served thresholds of a list need its trials."""
    return tuple(read_speech_trials(trials_file, speech_only))


def error_rates(scores: np.ndarray, labels: np.ndarray, threshold: float | np.ndarray) -> dict[str, float]:
    """False accepts (non-targets scoring >= threshold) and false rejects (targets below it); ``threshold``
    may be each trial's own (a set's duration table), and is then reported as its median."""
    accept = scores >= threshold
    return {"far": float(accept[labels == 0].mean()), "frr": float((~accept[labels == 1]).mean()),
            "threshold": float(np.median(threshold))}


def choose_threshold(scores: np.ndarray, labels: np.ndarray, max_far: float, max_frr: float) -> dict:
    """The calibration rule of the module docstring, with the rates it gives on these trials."""
    impostors = np.sort(scores[labels == 0])
    # the lowest threshold that accepts at most max_far of the impostors
    allowed = int(np.floor(max_far * impostors.size))
    candidate = float(np.nextafter(impostors[impostors.size - allowed - 1], np.inf)) if allowed < impostors.size \
        else float(impostors.min())
    rates = error_rates(scores, labels, candidate)
    if rates["frr"] <= max_frr:
        return rates | {"rule": f"lowest threshold with validation FAR <= {max_far:g} (FRR <= {max_frr:g} there)"}
    eer_threshold = compute_eer(scores, labels).threshold
    return error_rates(scores, labels, eer_threshold) | {"rule": "EER point (FAR cap would reject too many)"}


def strictest_threshold(populations: dict[str, tuple[np.ndarray, np.ndarray]], max_far: float,
                        max_frr: float) -> dict:
    """The highest of the populations' own thresholds (``choose_threshold``), with every population's
    rates there and the pooled rates."""
    own = {name: choose_threshold(scores, labels, max_far, max_frr) for name, (scores, labels) in populations.items()}
    threshold = max(rates["threshold"] for rates in own.values())
    pooled_scores = np.concatenate([scores for scores, _ in populations.values()])
    pooled_labels = np.concatenate([labels for _, labels in populations.values()])
    return error_rates(pooled_scores, pooled_labels, threshold) | {
        "rule": f"strictest of the populations' own thresholds (each: {next(iter(own.values()))['rule']})",
        "populations": {name: error_rates(scores, labels, threshold) | {"own_threshold": own[name]["threshold"]}
                        for name, (scores, labels) in populations.items()}}


def set_scores(adapter_set: AdapterSet, features_dir: str, trials_file: str) -> tuple[np.ndarray, np.ndarray]:
    features = load_features(features_dir)[0]
    trials = read_speech_trials(trials_file, SPEECH_ONLY[0])
    # a partly cached list (the synthetic test subset) is scored on the trials it covers: num_trials says how many
    kept = [t for t in trials if f"{t.path_a}#0" in features and f"{t.path_b}#0" in features]
    scores = trial_scores(adapter_set, features, kept)
    return scores, np.array([t.label for t in kept])


@torch.no_grad()
def trial_scores(adapter_set: AdapterSet, features, trials) -> np.ndarray:
    adapter_set.eval()
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
    vectors = {}
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        vectors |= dict(zip(chunk, embed(adapter_set, [features[f"{p}#0"] for p in chunk]), strict=True))
    return np.array([float(vectors[t.path_a] @ vectors[t.path_b]) for t in trials])


def teacher_vectors(teacher_dir: str) -> dict[str, torch.Tensor]:
    """The cached teacher (resemblyzer) unit embeddings by absolute ``path#view`` key."""
    vectors = {}
    for shard in sorted(Path(teacher_dir).glob("shard-*.safetensors")):
        with safe_open(shard, "pt") as handle:
            keys = json.loads(handle.metadata()["keys"])
        embeddings = load_file(shard)["embeddings"].float()
        vectors |= {absolute_key(k): torch.nn.functional.normalize(e, dim=-1) for k, e in zip(keys, embeddings,
                                                                                             strict=True)}
    return vectors


def teacher_scores(teacher_dir: str, trials_file: str) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's (resemblyzer's) cosine on the same trials, from the cached teacher shards."""
    vectors = teacher_vectors(teacher_dir)
    trials = [t for t in read_speech_trials(trials_file, SPEECH_ONLY[0])
              if f"{t.path_a}#0" in vectors and f"{t.path_b}#0" in vectors]
    return (np.array([float(vectors[f"{t.path_a}#0"] @ vectors[f"{t.path_b}#0"]) for t in trials]),
            np.array([t.label for t in trials]))


@functools.lru_cache(maxsize=2)
def served_model(adapter_dir: str, backbone: str, dtype: str) -> MultiAdapterModel:
    """The served model of one set, loaded once for every trial list a run scores (calibration and reports)."""
    torch.set_num_threads(1)
    model = MultiAdapterModel(load_backbone(backbone, quantization=None if dtype == "float32" else dtype))
    model.add_adapter_set("set", AdapterSet.load(adapter_dir))
    return model


@functools.lru_cache(maxsize=8)
def served_scores(adapter_dir: str, trials_file: str, backbone: str, dtype: str = "float32"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of any set (E/P-adapters, pitch fusion and all) through the served model itself: audio in,
    embeddings out (``MultiAdapterModel.predict``), cosine per trial. Kept per call: a threshold never
    changes a score, so --served-calibrate and --served on the same trials encode the clips once."""
    model = served_model(adapter_dir, backbone, dtype)
    trials = served_trials(trials_file, SPEECH_ONLY[0])
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)}, key=lambda p: sf.info(p).duration)
    vectors = {}
    for start in range(0, len(paths), 2):  # small batches: a 30 s clip's prosody pass is memory-hungry
        chunk = paths[start : start + 2]
        # the server takes at most max_duration_s (30 s): longer clips are cut, as a client must
        waves = [torch.from_numpy(load_audio(p)[: MAX_SAMPLES]) for p in chunk]
        vectors |= {p: pred.embedding for p, pred in zip(chunk, model.predict(waves, ["set"] * len(chunk)),
                                                         strict=True)}
    scores = [float(torch.nn.functional.cosine_similarity(vectors[t.path_a], vectors[t.path_b], dim=0))
              for t in trials]
    return np.array(scores), np.array([t.label for t in trials])


def choose_candidate(candidates: list[str], calibrate: str, out: str) -> dict[str, float]:
    """Copy the candidate with the lowest EER on the validation trials to ``out``; returns every EER."""
    features_dir, trials_file = calibrate.rsplit(":", 1)
    eers = {}
    for folder in candidates:
        scores, labels = set_scores(AdapterSet.load(folder), features_dir, trials_file)
        eers[folder] = round(compute_eer(scores, labels).eer, 4)
    best = min(eers, key=eers.get)
    if Path(out).exists():
        shutil.rmtree(out)
    shutil.copytree(best, out)
    return eers | {"chosen": best}


def summary(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    metrics = verification_metrics(scores, labels)
    return {"eer": round(metrics["eer"], 4), "eer_threshold": round(metrics["eer_threshold"], 4),
            "min_dcf_0.01": round(metrics["min_dcf_0.01"], 4), "num_trials": int(labels.size),
            **{k: round(v, 4) for k, v in error_rates(scores, labels, threshold).items()}}


def calibration(args: argparse.Namespace, adapter_set: AdapterSet) -> tuple[dict, str, np.ndarray]:
    """The threshold chosen on the validation trials (``--served-calibrate`` or ``--calibrate``), the trial
    list(s) it read and their labels."""
    if args.served_calibrate:
        populations = {path: served_scores(args.adapter, path, args.backbone, args.dtype)
                       for path in args.served_calibrate}
        labels = np.concatenate([labels for _, labels in populations.values()])
        chosen = strictest_threshold(populations, args.max_far, args.max_frr) if len(populations) > 1 \
            else choose_threshold(*populations[args.served_calibrate[0]], args.max_far, args.max_frr)
        return chosen, " ".join(args.served_calibrate), labels
    features_dir, trials_file = args.calibrate.rsplit(":", 1)
    scores, labels = set_scores(adapter_set, features_dir, trials_file)
    return choose_threshold(scores, labels, args.max_far, args.max_frr), trials_file, labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="verification set folder (--calibrate/--report: a training.distill student)")
    p.add_argument("--calibrate", metavar="FEATURES:TRIALS", help="validation trials that set the threshold "
                                                                  "(the set is rewritten with it)")
    p.add_argument("--served-calibrate", nargs="+", metavar="TRIALS",
                   help="like --calibrate, but scored through the served model: any set (E/P, pitch fusion); "
                        "several lists: the strictest of their thresholds")
    p.add_argument("--teacher-valid", help="teacher shards of the calibration clips: calibrate the teacher too")
    p.add_argument("--report", nargs="*", default=[], metavar="NAME=FEATURES:TRIALS[:TEACHER]",
                   help="trial lists to report at the served threshold (and the teacher's, when given)")
    p.add_argument("--served", nargs="*", default=[], metavar="NAME=TRIALS",
                   help="score trial lists through the served model (any set, no cache) at its threshold")
    p.add_argument("--record", action="store_true",
                   help="write each --served summary into the set's metrics under its NAME (the model card's source)")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--dtype", choices=("float32", "int8", "auto"), default="float32",
                   help="the served encoder's precision (ELP_DTYPE): the operating point under each")
    p.add_argument("--candidates", nargs="*", default=[],
                   help="sets to choose from by EER on the --calibrate trials; the best is copied to ADAPTER")
    p.add_argument("--speech-only", action="store_true", help="drop trials on clips the server refuses as silent")
    p.add_argument("--teacher-threshold", type=float, help="the teacher's threshold when not calibrated here")
    p.add_argument("--max-far", type=float, default=0.02)
    p.add_argument("--max-frr", type=float, default=0.05)
    args = p.parse_args(argv)
    SPEECH_ONLY[0] = args.speech_only
    if args.teacher_valid and args.served_calibrate and len(args.served_calibrate) > 1:
        p.error("--teacher-valid calibrates the teacher on one trial list")
    out: dict = {"speech_only": args.speech_only}
    if args.candidates:
        out["candidates"] = choose_candidate(args.candidates, args.calibrate, args.adapter)
    adapter_set = AdapterSet.load(args.adapter)
    out["threshold"] = adapter_set.config.threshold
    teacher_threshold = args.teacher_threshold
    if args.calibrate or args.served_calibrate:
        chosen, trials_file, labels = calibration(args, adapter_set)
        adapter_set.config.threshold = chosen["threshold"]
        adapter_set.config.training = (adapter_set.config.training or {}) | {
            "calibration": chosen | {"trials": trials_file, "num_trials": int(labels.size)}}
        adapter_set.save(args.adapter)
        out["calibration"] = chosen
        if args.teacher_valid:
            t_scores, t_labels = teacher_scores(args.teacher_valid, trials_file)
            teacher_threshold = choose_threshold(t_scores, t_labels, args.max_far, args.max_frr)["threshold"]
            out["teacher_calibration_threshold"] = teacher_threshold
    for spec in args.served:
        name, trials_file = spec.split("=", 1)
        scores, labels = served_scores(args.adapter, trials_file, args.backbone, args.dtype)
        # what /verify answers: the set's duration table at each trial's shorter clip, else its one threshold
        served = served_thresholds(adapter_set.config, list(served_trials(trials_file, SPEECH_ONLY[0])))
        out[f"{name} (served model)"] = summary(scores, labels, served) | {
            "by_duration": bool(adapter_set.config.duration_thresholds)}
        if args.record:
            adapter_set.config.metrics = (adapter_set.config.metrics or {}) | {
                name: out[f"{name} (served model)"], "speech_only": args.speech_only}
    if args.record and args.served:
        adapter_set.save(args.adapter)
    for spec in args.report:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        scores, labels = set_scores(adapter_set, parts[0], parts[1])
        out[name] = {"set": summary(scores, labels, float(adapter_set.config.threshold))}
        if len(parts) > 2:
            t_scores, t_labels = teacher_scores(parts[2], parts[1])
            out[name]["resemblyzer"] = summary(t_scores, t_labels, teacher_threshold or compute_eer(
                t_scores, t_labels).threshold)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
