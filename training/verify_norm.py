"""Choose a verification set's scoring on real-voice validation from cached served embeddings: the served
threshold, the pitch-fusion weight/angle, and score normalisation against a real-voice cohort; ``centre``
writes a set that serves cohort-mean centring (``HeadConfig.centred``).

Why a cache: every choice here (21 pitch settings x 5 scorings x several trial lists) is arithmetic on
the same clips' embeddings. ``cache`` runs each clip once through the served model
(``MultiAdapterModel.predict``) and keeps the *voice* part of the embedding and the clip's standardised
pitch ``z`` (the head's own statistics); the served embedding for any weight ``w`` and angle ``a`` is
then ``append_pitch(voice, z, w, a)``, exactly as the head computes it (checked against the served
embedding at the set's own ``w, a`` when cached).

    python -m training.verify_norm cache adapters_store/verify-default data/candidates/verify6/emb.pt \
        --trials data/human/verification_trials_valid.txt data/realvox-valid/verification_trials_valid.txt \
        --manifests data/realvox-valid/cohort.jsonl
    python -m training.verify_norm choose data/candidates/verify6/emb.pt --valid human=... realvox=... \
        --cohort data/realvox-valid/cohort.jsonl --synthetic-valid data/corpus/verification_trials_valid.txt
    python -m training.verify_norm centre adapters_store/verify-default data/candidates/verify6/emb.pt \
        --cohort data/realvox-valid/cohort.jsonl --out data/candidates/verify6-centred
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads.pooled import PITCH_INDEX, append_pitch
from elp.heads.prosody import clip_prosody
from elp.tasks.scoring import normalised_scores
from training.data.manifest import read_manifest
from training.dataset import load_audio
from training.metrics import compute_eer
from training.verify_calibrate import MAX_SAMPLES, choose_threshold, error_rates, read_speech_trials

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
ANGLES = (0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def cache(adapter_dir: str, paths: Sequence[str], out: Path, backbone: str) -> dict[str, dict]:
    """Voice embedding + pitch z per clip, added to the cache file at ``out`` (clips already there are kept)."""
    store: dict[str, dict] = torch.load(out) if out.exists() else {}
    todo = sorted(set(paths) - set(store), key=lambda p: sf.info(p).duration)  # little padding per batch
    adapter_set = AdapterSet.load(adapter_dir)
    weight, angle = adapter_set.config.head.pitch_weight, adapter_set.config.head.pitch_angle
    model = MultiAdapterModel(load_backbone(backbone))
    model.add_adapter_set("set", adapter_set)
    standardizer = adapter_set.head.prosody_norm.eval() if weight > 0 else None
    for start in range(0, len(todo), 4):
        chunk = todo[start : start + 4]
        waves = [torch.from_numpy(load_audio(p)[:MAX_SAMPLES]) for p in chunk]
        for path, wave, pred in zip(chunk, waves, model.predict(waves, ["set"] * len(chunk)), strict=True):
            served = pred.embedding.float().cpu()
            voice_dim = served.numel() - (2 if weight > 0 else 0)
            voice = torch.nn.functional.normalize(served[:voice_dim], dim=0)
            z = float(standardizer(clip_prosody(wave)[None])[0, PITCH_INDEX]) if standardizer is not None else 0.0
            if weight > 0:  # the cache must reproduce the served embedding
                again = append_pitch(voice[None], torch.tensor([z]), weight, angle)[0]
                if float(again @ served) < 0.9999:
                    raise RuntimeError(f"{path}: cached pitch does not reproduce the served embedding")
            store[path] = {"voice": voice.half(), "z": z}
        if start % 200 == 0:
            print(f"{start + len(chunk)}/{len(todo)}", flush=True)
            _save_atomically(store, out)
    if todo:
        _save_atomically(store, out)
    return store


def _save_atomically(store: dict[str, dict], out: Path) -> None:
    """Write the cache whole, then rename: evaluations running at once read it while one of them extends it (a
    rewrite in place was read half-written)."""
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    torch.save(store, partial)
    os.replace(partial, out)


def fused(store: dict[str, dict], paths: Sequence[str], weight: float, angle: float) -> np.ndarray:
    voices = torch.stack([store[p]["voice"].float() for p in paths])
    if weight <= 0:
        return voices.numpy()
    return append_pitch(voices, torch.tensor([store[p]["z"] for p in paths]), weight, angle).numpy()


def trial_scores(store: dict, trials: list, weight: float, angle: float, scoring: dict | None,
                 cohort: np.ndarray | None) -> np.ndarray:
    """Scores of the trials with the served scoring (:func:`elp.tasks.verification.normalised_scores`)."""
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
    row = {p: i for i, p in enumerate(paths)}
    vectors = torch.from_numpy(fused(store, paths, weight, angle))
    a = vectors[[row[t.path_a] for t in trials]]
    b = vectors[[row[t.path_b] for t in trials]]
    cohort_t = None if cohort is None else torch.from_numpy(cohort)
    if scoring is not None and scoring.get("dims") is not None:
        return partly_centred_scores(a, b, cohort_t, int(scoring["dims"])).numpy()
    return normalised_scores(a, b, scoring, cohort_t).numpy()


def partial_centre(cohort: torch.Tensor, dims: int | None) -> torch.Tensor:
    """The cohort mean with every coordinate from ``dims`` on set to 0: those parts are served uncentred."""
    mean = torch.nn.functional.normalize(cohort.float(), dim=-1).mean(dim=0)
    if dims is not None:
        mean[dims:] = 0.0
    return mean


def partly_centred_scores(a: torch.Tensor, b: torch.Tensor, cohort: torch.Tensor, dims: int) -> torch.Tensor:
    """Cosine after subtracting :func:`partial_centre`, as a head with that ``centre`` serves it."""
    mean, unit = partial_centre(cohort, dims), torch.nn.functional.normalize
    return (unit(a.float() - mean, dim=-1) * unit(b.float() - mean, dim=-1)).sum(dim=-1)


def figures(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """EER, and FAR/FRR at ``threshold`` (default: this list's own FAR <= 5% threshold)."""
    eer = compute_eer(scores, labels).eer
    rates = error_rates(scores, labels, threshold) if threshold is not None else \
        choose_threshold(scores, labels, 0.05, 1.0)
    return {"eer": round(100 * eer, 2), "far": round(100 * rates["far"], 2), "frr": round(100 * rates["frr"], 2),
            "threshold": round(rates["threshold"], 4), "trials": int(labels.size)}


def bootstrap_spread(trials: list, first: np.ndarray, second: np.ndarray, speaker_of: dict[str, str],
                     samples: int = 200, seed: int = 0) -> float:
    """Standard deviation (EER points) of ``EER(second) - EER(first)`` over speaker-level bootstrap
    resamples of the same trials: how large a difference these speakers can resolve. A trial counts as
    often as the product of its speakers' multiplicities in the resample."""
    rng = np.random.default_rng(seed)
    speakers = sorted({speaker_of[p] for t in trials for p in (t.path_a, t.path_b)})
    pairs = [(speakers.index(speaker_of[t.path_a]), speakers.index(speaker_of[t.path_b])) for t in trials]
    a_idx, b_idx = np.array(pairs).T
    labels = np.array([t.label for t in trials])
    differences = []
    for _ in range(samples):
        counts = np.bincount(rng.integers(len(speakers), size=len(speakers)), minlength=len(speakers))
        weight = np.where(labels == 1, counts[a_idx], counts[a_idx] * counts[b_idx])
        keep = np.repeat(np.arange(len(trials)), weight)
        if len(set(labels[keep])) < 2:
            continue
        differences.append(compute_eer(second[keep], labels[keep]).eer - compute_eer(first[keep], labels[keep]).eer)
    return round(100 * float(np.std(differences)), 2)


def scorings(top_ks: Sequence[int], centre_dims: Sequence[int] = ()) -> dict[str, dict | None]:
    """``centre_dims``: centring of the first N coordinates only (e.g. all but a second voice branch's part)."""
    return {"cosine": None, "centred": {"method": "centre"},
            **{f"centred-first-{n}": {"method": "centre", "dims": n} for n in centre_dims},
            "s-norm": {"method": "s-norm"}, **{f"as-norm-{k}": {"method": "as-norm", "top_k": k} for k in top_ks}}


def choose(args: argparse.Namespace) -> dict:
    """The tables of the fifth session: threshold, pitch grid, normalisations, all on validation trials."""
    store = torch.load(args.cache)
    lists = {name: read_speech_trials(path, True) for name, path in (s.split("=", 1) for s in args.valid)}
    pooled = [t for trials in lists.values() for t in trials]
    labels = {name: np.array([t.label for t in trials]) for name, trials in lists.items()} | {
        "pooled": np.array([t.label for t in pooled])}
    synthetic = read_speech_trials(args.synthetic_valid, True) if args.synthetic_valid else []
    cohort_paths = [r.path for r in read_manifest(args.cohort)] if args.cohort else []
    out: dict = {"trials": {k: int(v.size) for k, v in labels.items()}, "cohort_clips": len(cohort_paths)}
    speaker_of = {r.path: r.speaker for m in args.speakers for r in read_manifest(m)}
    pitch = []
    for weight in WEIGHTS:
        for angle in ANGLES if weight else (1.0,):
            row = {"weight": weight, "angle": angle}
            for name, trials in {**lists, "pooled": pooled}.items():
                row[name] = figures(trial_scores(store, trials, weight, angle, None, None), labels[name])["eer"]
            if synthetic:
                s_labels = np.array([t.label for t in synthetic])
                row["synthetic"] = figures(trial_scores(store, synthetic, weight, angle, None, None), s_labels)["eer"]
            pitch.append(row)
    out["pitch_grid"] = pitch
    best = min(pitch, key=lambda r: (r["pooled"], r["weight"], r["angle"]))
    served = tuple(args.served_pitch)
    pooled_labels = labels["pooled"]
    choice = {}
    for tag, (w, a) in (("served", served), ("best", (best["weight"], best["angle"]))):
        choice[tag] = {"weight": w, "angle": a} | figures(trial_scores(store, pooled, w, a, None, None), pooled_labels)
    if speaker_of:
        choice["spread"] = bootstrap_spread(pooled, trial_scores(store, pooled, *served, None, None),
                                            trial_scores(store, pooled, best["weight"], best["angle"], None, None),
                                            speaker_of)
    out["pitch_choice"] = choice
    weight, angle = args.pitch
    norm = {}
    cohort = fused(store, cohort_paths, weight, angle) if cohort_paths else None
    for name, scoring in scorings(args.top_k, args.centre_dims).items():
        if scoring is not None and cohort is None:
            continue
        rows = {}
        for list_name, trials in {**lists, "pooled": pooled}.items():
            rows[list_name] = figures(trial_scores(store, trials, weight, angle, scoring, cohort), labels[list_name])
        pooled_threshold = rows["pooled"]["threshold"]
        for list_name, trials in lists.items():  # each part at the pooled (served) threshold
            scores = trial_scores(store, trials, weight, angle, scoring, cohort)
            rows[list_name] |= {"at_pooled_threshold": figures(scores, labels[list_name], pooled_threshold)}
        if scoring is None and args.current_threshold is not None:  # the set as served today
            for list_name, trials in {**lists, "pooled": pooled}.items():
                scores = trial_scores(store, trials, weight, angle, None, None)
                rows[list_name] |= {"at_current_threshold": figures(scores, labels[list_name], args.current_threshold)}
        if synthetic:
            s_labels = np.array([t.label for t in synthetic])
            rows["synthetic"] = figures(trial_scores(store, synthetic, weight, angle, scoring, cohort), s_labels,
                                        pooled_threshold)
        if speaker_of:  # the paired speaker-bootstrap spread of this scoring's pooled EER against cosine
            rows["pooled"]["spread_vs_cosine"] = bootstrap_spread(
                pooled, trial_scores(store, pooled, weight, angle, None, None),
                trial_scores(store, pooled, weight, angle, scoring, cohort), speaker_of)
        norm[name] = rows
    out["scoring"] = norm
    return out


def report(args: argparse.Namespace) -> dict:
    """Test lists, read once, at a fixed threshold, pitch setting and scoring."""
    store = torch.load(args.cache)
    weight, angle = args.pitch
    scoring = json.loads(args.scoring) if args.scoring else None
    cohort = fused(store, [r.path for r in read_manifest(args.cohort)], weight, angle) if args.cohort else None
    out = {}
    for spec in args.lists:
        name, path = spec.split("=", 1)
        trials = read_speech_trials(path, True)
        labels = np.array([t.label for t in trials])
        out[name] = figures(trial_scores(store, trials, weight, angle, scoring, cohort), labels, args.threshold)
    return out


@torch.no_grad()
def write_centred(adapter_dir: str, store: dict, cohort_manifest: str, out: str, backbone: str,
                  dims: int | None = None) -> dict:
    """The set with the cohort mean of its cached voice embeddings as its head's centre
    (``HeadConfig.centred``): served, its cosine is the ``centre`` scoring that ``choose`` measured (with
    ``dims``, the ``centred-first-N`` one: the coordinates from ``dims`` on keep a zero centre)."""
    source = AdapterSet.load(adapter_dir).eval()
    if source.config.head.centred:
        raise SystemExit(f"{adapter_dir} is centred already: cache and centre the set it was made from")
    paths = [r.path for r in read_manifest(cohort_manifest)]
    missing = [p for p in paths if p not in store]
    if missing:
        raise SystemExit(f"{len(missing)} cohort clips are not in the cache (first: {missing[0]})")
    model = MultiAdapterModel(load_backbone(backbone))
    model.add_adapter_set("set", source)
    for path in paths[:3]:  # the cache must hold this set's embeddings, not another's
        served = model.predict([torch.from_numpy(load_audio(path)[:MAX_SAMPLES])], ["set"])[0].embedding.float()
        voice = torch.nn.functional.normalize(served[: store[path]["voice"].numel()], dim=0)
        if float(voice @ store[path]["voice"].float()) < 0.999:
            raise SystemExit(f"the cache does not hold {adapter_dir}'s embedding of {path}")
    centre = partial_centre(torch.from_numpy(fused(store, paths, 0.0, 0.0)), dims)
    config = copy.deepcopy(source.config)
    config.head.centred = True
    centred = AdapterSet(config)
    centred.load_state_dict(source.state_dict() | {"head.centre": centre.to(torch.float32)})
    record = {"cohort": cohort_manifest, "clips": len(paths), "centre_norm": round(float(centre.norm()), 4)}
    if dims is not None:
        record["centred_dims"] = dims
    centred.config.training = (centred.config.training or {}) | {"centring": record}
    centred.save(out)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="embed clips through the served model (voice part + pitch z)")
    c.add_argument("adapter")
    c.add_argument("out", type=Path)
    c.add_argument("--trials", nargs="*", default=[], help="trial lists whose (speech) clips to cache")
    c.add_argument("--manifests", nargs="*", default=[], help="manifests whose clips to cache (the cohort)")
    c.add_argument("--backbone", default="models/whisper-base")
    for name in ("choose", "report"):
        s = sub.add_parser(name)
        s.add_argument("cache", type=Path)
        s.add_argument("--cohort", help="manifest of the cohort clips (cached)")
        s.add_argument("--pitch", type=float, nargs=2, default=(0.3, 1.0), metavar=("WEIGHT", "ANGLE"))
    ch = sub.choices["choose"]
    ch.add_argument("--valid", nargs="+", required=True, metavar="NAME=TRIALS")
    ch.add_argument("--synthetic-valid", help="the corpus' synthetic validation trials (a no-harm check)")
    ch.add_argument("--top-k", type=int, nargs="*", default=[10, 25, 50, 100])
    ch.add_argument("--current-threshold", type=float, help="the served threshold now (reported, not chosen)")
    ch.add_argument("--served-pitch", type=float, nargs=2, default=(0.3, 1.0), help="the set's (w, a) now")
    ch.add_argument("--centre-dims", type=int, nargs="*", default=[],
                    help="also score centring of the first N coordinates only (leaves the rest uncentred)")
    ch.add_argument("--speakers", nargs="*", default=[], help="manifests naming the valid clips' speakers "
                                                               "(for the speaker-bootstrap spread)")
    ce = sub.add_parser("centre", help="write the set with its cohort mean as the head's centre (served centring)")
    ce.add_argument("adapter")
    ce.add_argument("cache", type=Path, help="the cache of this set's embeddings (``cache``), cohort clips included")
    ce.add_argument("--cohort", required=True, help="manifest of the cohort clips")
    ce.add_argument("--out", required=True)
    ce.add_argument("--dims", type=int, help="centre the first N coordinates only (choose's centred-first-N)")
    ce.add_argument("--backbone", default="models/whisper-base")
    rp = sub.choices["report"]
    rp.add_argument("lists", nargs="+", metavar="NAME=TRIALS")
    rp.add_argument("--threshold", type=float, required=True)
    rp.add_argument("--scoring", help="JSON scoring config (as in adapter_config.json), default cosine")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "cache":
        paths = {p for t in args.trials for trial in read_speech_trials(t, True) for p in (trial.path_a, trial.path_b)}
        paths |= {r.path for m in args.manifests for r in read_manifest(m)}
        store = cache(args.adapter, sorted(paths), args.out, args.backbone)
        print(json.dumps({"clips": len(store)}))
        return 0
    if args.command == "centre":
        print(json.dumps(write_centred(args.adapter, torch.load(args.cache), args.cohort, args.out, args.backbone,
                                       args.dims)))
        return 0
    result = choose(args) if args.command == "choose" else report(args)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
