"""Speaker-embedding distillation: an L-adapter + pooled-head set on the frozen encoder learns a teacher's
d-vectors (resemblyzer, trained on thousands of real speakers) from cached features.

Why: a set trained with AM-softmax on a few hundred synthetic speakers learns what tells *those* voices
apart (27% EER on real people); the teacher's embedding space already separates real voices, and it can
be computed on any audio, so every synthetic clip, and every degraded or speed-perturbed view of it,
teaches the student where real-voice geometry puts that sound. Loss per batch:
``mean(1 - cos(student, teacher))`` + ``structure_weight * MSE(student cosines, teacher cosines)``
(the batch's similarity matrix, Park et al.'s relational distillation) + optionally AM-softmax on the
synthetic speaker labels. Features come from :mod:`training.distill_cache`; the epoch kept is the one
with the lowest EER on the selection trials (real-voice validation speakers when given).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from elp import AdapterSet, config_for_method, load_backbone
from elp.heads import AMSoftmaxLoss
from elp.heads.config import HeadConfig
from training.data.manifest import read_manifest, read_trials
from training.distill_cache import refuse_held_out
from training.evaluation import public
from training.loop import warmup_cosine
from training.metrics import verification_metrics

Features = dict[str, list[torch.Tensor | None]]


def absolute_key(key: str) -> str:
    """``path#view`` with the path made absolute the way manifests and trial lists make theirs."""
    path, view = key.rsplit("#", 1)
    return f"{os.path.abspath(path)}#{view}"


def load_features(folder: str | Path, with_teacher: str | Path | None = None
                  ) -> tuple[Features, dict[str, torch.Tensor], dict[str, str], list[int]]:
    """Cached views by key (``path#view``): per-layer fp16 frames (None for layers not cached), the
    teacher's embedding when its folder is given, and each view's recipe."""
    features: Features = {}
    teacher: dict[str, torch.Tensor] = {}
    recipes: dict[str, str] = {}
    layers: list[int] = []
    for shard in sorted(Path(folder).glob("shard-*.safetensors")):
        with safe_open(shard, "pt") as handle:
            meta = handle.metadata()
        if with_teacher is not None and json.loads(meta.get("eval_only", "false")):
            raise SystemExit(f"{shard} holds held-out clips cached for evaluation only: not training data")
        keys, layers = [absolute_key(k) for k in json.loads(meta["keys"])], json.loads(meta["layers"])
        tensors = load_file(shard)
        for i, key in enumerate(keys):
            states: list[torch.Tensor | None] = [None] * (max(layers) + 1)
            for k, layer in enumerate(layers):
                states[layer] = tensors[f"{i}.{k}"]
            features[key] = states
        recipes |= dict(zip(keys, json.loads(meta["recipes"]), strict=True))
        if with_teacher is not None:
            vectors = load_file(Path(with_teacher) / shard.name)["embeddings"]
            teacher |= {key: F.normalize(vectors[i].float(), dim=-1) for i, key in enumerate(keys)}
    return features, teacher, recipes, layers


def crop(states: list[torch.Tensor | None], max_frames: int, generator: torch.Generator | None):
    """A random window of at most ``max_frames`` frames, the same in every layer."""
    frames = next(s for s in states if s is not None).shape[0]
    if generator is None or frames <= max_frames:
        return states
    start = int(torch.randint(0, frames - max_frames + 1, (1,), generator=generator))
    return [None if s is None else s[start : start + max_frames] for s in states]


def embed(adapter_set: AdapterSet, batch: list[list[torch.Tensor | None]]) -> torch.Tensor:
    """The set's unit embeddings of cached clips (featurizer + head, exactly as served)."""
    lengths = torch.tensor([next(s for s in states if s is not None).shape[0] for states in batch])
    layers = []
    for k in range(len(batch[0])):
        parts = [states[k] for states in batch]
        layers.append(None if parts[0] is None else nn.utils.rnn.pad_sequence([p.float() for p in parts],
                                                                              batch_first=True))
    return adapter_set.head(adapter_set.featurizer(layers), lengths)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, structure_weight: float) -> torch.Tensor:
    """``mean(1 - cos)`` to the teacher plus the MSE between the two batch cosine matrices."""
    student, teacher = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    loss = (1 - (student * teacher).sum(-1)).mean()
    if structure_weight:
        loss = loss + structure_weight * F.mse_loss(student @ student.t(), teacher @ teacher.t())
    return loss


@torch.no_grad()
def trial_metrics(adapter_set: AdapterSet, features: Features, trials, teacher: dict | None = None) -> dict:
    """EER etc. of the set on the ``trials`` whose clips are cached (keyed ``path#0``; ``num_trials``
    says how many); with the teacher's embeddings also the mean student-teacher cosine."""
    adapter_set.eval()
    trials = [t for t in trials if f"{t.path_a}#0" in features and f"{t.path_b}#0" in features]
    paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
    vectors = {}
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        vectors |= dict(zip(chunk, embed(adapter_set, [features[f"{p}#0"] for p in chunk]), strict=True))
    scores = [float(vectors[t.path_a] @ vectors[t.path_b]) for t in trials]
    metrics = verification_metrics(scores, [t.label for t in trials]) | {"num_trials": len(trials)}
    if teacher:
        agree = [float(vectors[p] @ teacher[f"{p}#0"]) for p in paths if f"{p}#0" in teacher]
        metrics["teacher_cosine"] = sum(agree) / max(1, len(agree))
    return metrics


def build_student(backbone_path: str, layers: list[int], l_dim: int, pooling: str,
                  embedding_dim: int, dropout: float) -> AdapterSet:
    """A fresh ``l`` set: L-adapters over the cached layers and a pooled speaker-embedding head."""
    backbone = load_backbone(backbone_path)
    config = config_for_method("l", "verification", backbone.identity.to_dict(),
                               head=HeadConfig(hidden_dim=256, embedding_dim=embedding_dim, pooling=pooling,
                                               dropout=dropout))
    config.l_adapter.layers, config.l_adapter.dim = list(layers), l_dim
    return AdapterSet.create(config, backbone)


def speaker_classes(keys: list[str], recipes: dict[str, str], manifests: list[str]) -> dict[str, int]:
    """A class per labelled speaker and speed factor (a speed-perturbed voice is another speaker). Views
    of clips in no manifest (unlabelled real voices) get no class: they learn from the teacher only."""
    speaker = {row.path: row.speaker for m in manifests for row in read_manifest(m)}
    names = {}
    for key in keys:
        path = key.rsplit("#", 1)[0]
        if path not in speaker:
            continue
        factor = next((part for part in recipes[key].split("+") if part.startswith("speed")), "")
        names[key] = f"{speaker[path]}|{factor}"
    index = {name: i for i, name in enumerate(sorted(set(names.values())))}
    return {key: index[name] for key, name in names.items()}


def teacher_prototypes(teacher: dict[str, torch.Tensor], classes: dict[str, int]) -> torch.Tensor:
    """Each speaker class's mean teacher embedding (unit): AM-softmax class weights that start where the
    distillation term pulls the student, so the two terms agree from the first step (random class
    weights fought the distillation term: validation EER 48% after an epoch)."""
    sums = torch.zeros(max(classes.values()) + 1, next(iter(teacher.values())).numel())
    for key, label in classes.items():
        sums[label] += teacher[key]
    return F.normalize(sums, dim=-1)


def train_epoch(adapter_set: AdapterSet, batches: list[list[str]], features: Features,
                teacher: dict[str, torch.Tensor], optimizer, scheduler, args, generator: torch.Generator,
                aam: AMSoftmaxLoss | None = None, classes: dict[str, int] | None = None) -> float:
    """One pass over ``batches`` of keys; returns the mean loss."""
    adapter_set.train()
    total = 0.0
    for keys in batches:
        student = embed(adapter_set, [crop(features[k], args.crop_frames, generator) for k in keys])
        loss = distill_loss(student, torch.stack([teacher[k] for k in keys]), args.structure_weight)
        labelled = [i for i, k in enumerate(keys) if classes is not None and k in classes]
        if aam is not None and labelled:
            loss = loss + args.aam_weight * aam(student[labelled], torch.tensor([classes[keys[i]] for i in labelled]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
    return total / max(1, len(batches))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", required=True, help="feature folders of training views")
    p.add_argument("--teacher", nargs="+", required=True, help="their teacher folders, in the same order")
    p.add_argument("--eval", nargs="*", default=[], metavar="NAME=FEATURES:TRIALS",
                   help="trial lists scored every epoch on cached view-0 features (validation only)")
    p.add_argument("--select", help="the --eval NAME whose EER picks the epoch (default: the first)")
    p.add_argument("--manifests", nargs="*", default=[], help="manifests with speaker labels (AM-softmax)")
    p.add_argument("--out", required=True)
    p.add_argument("--save-epochs", help="also save every epoch's set under this folder (epoch-NN)")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--structure-weight", type=float, default=1.0)
    p.add_argument("--aam-weight", type=float, default=0.0)
    p.add_argument("--no-center-teacher", dest="center_teacher", action="store_false",
                   help="learn the raw teacher vectors (collapses to their mean direction; see center())")
    p.add_argument("--crop-frames", type=int, default=150, help="random training window (50 frames = 1 s)")
    p.add_argument("--l-dim", type=int, default=256)
    p.add_argument("--embedding-dim", type=int, default=256, help="the teacher's dimension (resemblyzer: 256)")
    p.add_argument("--pooling", choices=["mean", "stats"], default="stats")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads: on a shared 2-core machine more threads spin instead of working")
    p.add_argument("--description", default="speaker embedding distilled from resemblyzer (GE2E) on cached "
                                            "whisper-base layers of synthetic clips")
    return p.parse_args(argv)


def load_training(args) -> tuple[Features, dict[str, torch.Tensor], dict[str, str], list[int]]:
    features: Features = {}
    teacher: dict[str, torch.Tensor] = {}
    recipes: dict[str, str] = {}
    layers: list[int] = []
    for feature_dir, teacher_dir in zip(args.train, args.teacher, strict=True):
        f, t, r, layers = load_features(feature_dir, teacher_dir)
        features, teacher, recipes = features | f, teacher | t, recipes | r
    refuse_held_out(sorted(features))
    if args.center_teacher:
        teacher = center(teacher)
    return features, teacher, recipes, layers


def center(teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Teacher embeddings minus their mean, re-normalised. resemblyzer's d-vectors are non-negative and
    any two voices score ~0.4-0.9, so the raw targets share one dominant direction: a student that
    outputs that constant vector already halves the cosine loss, and the first run collapsed there
    (every pair of embeddings at cosine 0.9999, validation EER 50% after an epoch). Centred, only
    what tells voices apart is left to learn; cosine scoring is the same test after a fixed shift."""
    mean = torch.stack(list(teacher.values())).mean(dim=0)
    return {key: F.normalize(vector - mean, dim=-1) for key, vector in teacher.items()}


def load_evals(specs: list[str]) -> dict[str, tuple[Features, list]]:
    evals = {}
    for spec in specs:
        name, rest = spec.split("=", 1)
        feature_dir, trials_file = rest.rsplit(":", 1)
        evals[name] = (load_features(feature_dir)[0], read_trials(trials_file))
    return evals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    features, teacher, recipes, layers = load_training(args)
    evals = load_evals(args.eval)
    select = args.select or next(iter(evals))
    keys = sorted(features)
    print(json.dumps({"train_views": len(keys), "layers": layers, "evals": list(evals),
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    adapter_set = build_student(args.backbone, layers, args.l_dim, args.pooling, args.embedding_dim, args.dropout)
    aam = classes = None
    if args.aam_weight:
        classes = speaker_classes(keys, recipes, args.manifests)
        print(json.dumps({"labelled_views": len(classes), "classes": max(classes.values()) + 1}), flush=True)
        aam = AMSoftmaxLoss(adapter_set.head.embedding_size, max(classes.values()) + 1)
        aam.weight.data = teacher_prototypes(teacher, classes)
    optimizer = torch.optim.AdamW([*adapter_set.parameters(), *(aam.parameters() if aam else [])], lr=args.lr,
                                  weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(keys) // args.batch_size)
    total = args.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, int(0.05 * total), step / total))
    generator = torch.Generator().manual_seed(args.seed)
    best, best_state, best_scores, history = float("inf"), None, {}, []
    for epoch in range(args.epochs):
        order = torch.randperm(len(keys), generator=generator).tolist()
        batches = [[keys[i] for i in order[s : s + args.batch_size]] for s in range(0, len(order), args.batch_size)]
        loss = train_epoch(adapter_set, batches, features, teacher, optimizer, scheduler, args, generator,
                           aam, classes)
        scores = {name: public(trial_metrics(adapter_set, f, t)) for name, (f, t) in evals.items()}
        history.append({"epoch": epoch + 1, "loss": round(loss, 4),
                        "seconds": round(time.perf_counter() - started, 1)}
                       | {f"{name}_eer": round(m["eer"], 4) for name, m in scores.items()})
        print(json.dumps(history[-1]), flush=True)
        if args.save_epochs:  # every epoch, for a later choice on validation data cached meanwhile
            save_student(adapter_set, args, scores, history, select, len(keys),
                         Path(args.save_epochs) / f"epoch-{epoch + 1:02d}")
        if scores[select]["eer"] < best:
            best, best_state, best_scores = scores[select]["eer"], copy.deepcopy(adapter_set.state_dict()), scores
    adapter_set.load_state_dict(best_state)
    save_student(adapter_set, args, best_scores, history, select, len(keys))
    return 0


def save_student(adapter_set: AdapterSet, args, scores: dict, history: list[dict], select: str,
                 views: int, out: Path | None = None) -> None:
    """Save with the selection trials' EER threshold (``training.calibrate`` may replace it)."""
    config = adapter_set.config
    config.threshold = float(scores[select]["eer_threshold"])
    config.metrics = {f"valid_{name}": m for name, m in scores.items()}
    config.description = args.description
    config.training = {"recipe": "training.distill", "selected_by": f"{select} EER", "train_views": views,
                       "history": history} | {k: v for k, v in vars(args).items() if k not in ("eval",)}
    adapter_set.save(out or args.out)


if __name__ == "__main__":
    raise SystemExit(main())
