"""Fit a speaker set's pitch coordinate (``HeadConfig.pitch_weight`` / ``pitch_angle``) on validation.

Median pitch is a classic prosodic speaker cue that a log-mel encoder trained for words keeps only
weakly. This tool adds it to a trained verification set without retraining: the running statistics
of the prosody features come from the training clips, the weight and angle from a grid searched by
validation EER (ties go to the smaller weight: the least change), and the set is written with its
served validation/test metrics and the EER threshold of the fused score. Weight 0 (no fusion) is in
the grid, so a set for which pitch does not help on validation comes back unchanged in behaviour.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads.pooled import PITCH_INDEX, RunningStandardizer, append_pitch
from elp.heads.prosody import NUM_PROSODY_FEATURES, clip_prosody
from elp.tasks import get_task
from training.data.manifest import filter_split, read_manifest, read_trials
from training.dataset import load_audio
from training.evaluation import evaluate_set, predict_rows, public, trial_clip_rows
from training.metrics import verification_metrics

KEY = "set"


def fused_eer(trials, embeddings: dict[str, torch.Tensor], pitch_z: dict[str, float], weight: float,
              angle: float) -> float:
    """Validation EER of the fused embeddings, computed exactly as the head computes them."""
    paths = list(embeddings)
    stacked = torch.stack([embeddings[p] for p in paths])
    fused = append_pitch(stacked, torch.tensor([pitch_z[p] for p in paths]), weight, angle) if weight else stacked
    row = {p: i for i, p in enumerate(paths)}
    scores = [float(fused[row[t.path_a]] @ fused[row[t.path_b]]) for t in trials]
    return verification_metrics(scores, [t.label for t in trials])["eer"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="verification adapter-set folder")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
    p.add_argument("--angles", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    corpus = Path(args.corpus)
    source = AdapterSet.load(args.adapter)
    if get_task(source.task).evaluation != "trials":
        raise SystemExit(f"{args.adapter} is a {source.task} set, not one scored on speaker trials")
    if source.config.head.prosody:
        raise SystemExit("the head already reads prosody through its learnt branch: fit pitch on a plain speaker head")
    config = copy.deepcopy(source.config)
    config.head.pitch_weight = 0.0  # embeddings of the voice alone; the pitch is added below
    base = AdapterSet(config)
    base.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("head.prosody_norm.")})
    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device))
    model.add_adapter_set(KEY, base)

    rows = read_manifest(corpus / "verification.jsonl")
    train_stats = torch.stack([clip_prosody(torch.from_numpy(load_audio(r.path))) for r in filter_split(rows, "train")])
    standardizer = RunningStandardizer(NUM_PROSODY_FEATURES).eval()  # the head's own, with the training statistics
    with torch.no_grad():
        standardizer.running_mean.copy_(train_stats.mean(dim=0))
        standardizer.running_var.copy_(train_stats.var(dim=0, unbiased=False))
        standardizer.batches_seen.fill_(len(train_stats))
    valid_trials = read_trials(corpus / "verification_trials_valid.txt")
    clips = trial_clip_rows(valid_trials)
    predictions, _ = predict_rows(model, KEY, clips)
    embeddings = {c.path: predictions[c.id].embedding.float() for c in clips}
    clip_stats = torch.stack([clip_prosody(torch.from_numpy(load_audio(c.path))) for c in clips])
    pitch_z = dict(zip([c.path for c in clips], standardizer(clip_stats)[:, PITCH_INDEX].tolist(), strict=True))
    grid = []
    for weight in sorted(set(args.weights)):
        for angle in sorted(set(args.angles)) if weight else [config.head.pitch_angle]:
            grid.append({"weight": weight, "angle": angle,
                         "valid_eer": fused_eer(valid_trials, embeddings, pitch_z, weight, angle)})
            print(json.dumps(grid[-1]), flush=True)
    best = min(grid, key=lambda g: (round(g["valid_eer"], 6), g["weight"], g["angle"]))

    fitted_config = copy.deepcopy(source.config)
    fitted_config.head.pitch_weight, fitted_config.head.pitch_angle = best["weight"], best["angle"]
    fitted = AdapterSet(fitted_config)
    state = base.state_dict()
    if best["weight"]:
        state |= {f"head.prosody_norm.{name}": tensor for name, tensor in standardizer.state_dict().items()}
    fitted.load_state_dict(state, strict=True)
    model.add_adapter_set("fitted", fitted.to(model.backbone.device))
    metrics = {split: evaluate_set(model, "fitted", filter_split(rows, split),
                                   read_trials(corpus / f"verification_trials_{split}.txt"))
               for split in ("valid", "test")}
    print(json.dumps({"chosen": best, **{s: public(m) for s, m in metrics.items()}}), flush=True)
    fitted.config.threshold = float(metrics["valid"]["eer_threshold"])
    fitted.config.metrics = {"valid": public(metrics["valid"]), "test": public(metrics["test"]),
                             "before_pitch_fusion": source.config.metrics}
    fitted.config.training = (fitted.config.training or {}) | {
        "pitch_fusion": {"grid": grid, "chosen": best, "statistics_from": "training clips of the corpus",
                         "train_clips": len(train_stats)}}
    fitted.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
