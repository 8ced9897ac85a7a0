"""``elp-train``: train one adapter set (or a baseline) for one task and write it to the store.

Methods: ``elp`` and every subset (``el``, ``e``, ``l``, ``p``, ...), ``none`` (head on the frozen
weighted layer sum) and ``full`` (fine-tune the whole backbone with the same head; a baseline whose
result is measured but not served). Per-group learning rates follow ELP.md (head > L > E).
Checkpoints are safetensors + JSON (never pickle); ``--resume`` continues from the last one.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from elp import AdapterSet, MultiAdapterModel, config_for_method, load_backbone
from elp.heads.config import HeadConfig
from elp.tasks import get_task
from training.data.manifest import extra_splits, filter_split, read_manifest, read_trials, repeated
from training.dataset import CTC_VOCAB, ClipDataset, LengthBucketSampler, collate, task_augment
from training.evaluation import evaluate_set, headline, public
from training.loop import (
    HeadBatch,
    LoopSettings,
    LoopState,
    TrainingLoop,
    Validation,
    cosine_scheduler,
    load_checkpoint,
    save_checkpoint,
    write_back_metrics,
)
from training.suites.guard import check_choice_rows, check_training_rows
from training.train_args import LR_PRESETS, build_parser

__all__ = ["LR_PRESETS", "TrainResult", "build_parser", "main", "train"]

TRAIN_KEY = "train"


def trial_files(task: str) -> dict[str, str]:
    """Trial lists per split of a task scored on trials (``<task>_trials_<split>.txt``), else none."""
    if get_task(task).evaluation != "trials":
        return {}
    return {split: f"{task}_trials_{split}.txt" for split in ("valid", "test")}


@dataclass
class TrainResult:
    task: str
    method: str
    trained_parameters: int
    valid: dict
    test: dict | None
    steps: int
    seconds: float
    output: str | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _limit(rows: list, limit: int, seed: int) -> list:
    if not limit or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def _param_groups(adapter_set: AdapterSet, loss: nn.Module, backbone: nn.Module | None, rates: dict[str, float]):
    groups = [
        {"name": "head", "params": [*adapter_set.head.parameters(), *loss.parameters()], "lr": rates["head"]},
        {"name": "l", "params": list(adapter_set.featurizer.parameters()), "lr": rates["l"]},
    ]
    if adapter_set.e_adapters is not None:
        groups.append({"name": "e", "params": list(adapter_set.e_adapters.parameters()), "lr": rates["e"]})
    if adapter_set.p_adapter is not None:
        groups.append({"name": "p", "params": list(adapter_set.p_adapter.parameters()), "lr": rates["p"]})
    if backbone is not None:
        groups.append({"name": "backbone", "params": [p for p in backbone.parameters() if p.requires_grad],
                       "lr": rates["backbone"]})
    return [g for g in groups if g["params"]]


@dataclass
class LiveFeatures:
    """Training batches through the backbone: waveforms, augmented on the fly, in length buckets."""

    model: MultiAdapterModel
    loader: DataLoader
    sampler: LengthBucketSampler
    dataset: ClipDataset
    device: torch.device
    amp: bool = False

    def train(self) -> None:
        self.model.train()

    def batches(self, epoch: int) -> DataLoader:
        self.sampler.epoch = self.dataset.epoch = epoch
        return self.loader

    def forward(self, batch: dict) -> HeadBatch:
        waves = batch["waveforms"].to(self.device, non_blocking=True)
        lengths = batch["lengths"].to(self.device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp and self.device.type == "cuda")
        with autocast:
            group = self.model(waves, lengths, [TRAIN_KEY] * len(lengths))[TRAIN_KEY]
        target_lengths = batch.get("target_lengths")
        return HeadBatch(group.output, batch["targets"].to(self.device), group.lengths,
                         None if target_lengths is None else target_lengths.to(self.device))


@dataclass
class Splits:
    """The rows a run reads: train, valid and test clips, and verification's trial lists."""

    train: list
    valid: list
    test: list
    trials: dict
    labels: list[str] | None
    extra_corpora: list[dict] = field(default_factory=list)  # what each --extra-corpus held (for the set's record)


def _read_splits(args: argparse.Namespace, corpus: Path) -> Splits:
    rows = read_manifest(corpus / f"{args.task}.jsonl")
    train_rows = _limit(filter_split(rows, "train"), args.max_train_clips, args.seed)
    check_training_rows(train_rows, f"{corpus / args.task}.jsonl (train split)")
    trials = {split: read_trials(corpus / name) for split, name in trial_files(args.task).items()
              if (corpus / name).exists()}
    labels = sorted({r.label for r in rows if r.label}) if get_task(args.task).target_field == "label" else None
    valid_rows = filter_split(rows, "valid")
    if args.extra_corpus and args.extra_repeat < 1:
        raise SystemExit("--extra-repeat must be 1 or more")
    extra_records = []
    for folder in args.extra_corpus:
        record, extra_train, extra_valid = extra_splits(folder, args.task, labels)
        extra_records.append(record)
        check_training_rows(extra_train, f"{Path(folder) / args.task}.jsonl (train split)")
        check_choice_rows(extra_valid, f"{Path(folder) / args.task}.jsonl (valid split)")
        train_rows += repeated(extra_train, args.extra_repeat)
        valid_rows += extra_valid
    return Splits(train_rows, _limit(valid_rows, args.max_eval_clips, args.seed),
                  _limit(filter_split(rows, "test"), args.max_eval_clips, args.seed), trials, labels, extra_records)


def _slot_names(task: str, labels: list[str] | None) -> list[str] | None:
    """The task's slot names (its example set's, e.g. intent's action/object/location) when every
    label splits into them, else None."""
    slots = get_task(task).example_fields().get("slot_names")
    if slots and labels and all(len(label.split("_")) == len(slots) for label in labels):
        return list(slots)
    return None


def _build_set(args: argparse.Namespace, method: str, backbone, labels: list[str] | None,
               device: torch.device) -> AdapterSet:
    """A fresh set for the task and method (or ``--init-from``'s), with ``--train-only`` applied."""
    spec = get_task(args.task)
    vocab = CTC_VOCAB if spec.target_field == "text" else None
    config = config_for_method(
        "none" if method == "full" else method, args.task, backbone.identity.to_dict(),
        labels=labels, vocab=vocab, slot_names=(slot_names := _slot_names(args.task, labels)),
        num_prompt_frames=args.prompt_frames, prompt_position=args.prompt_position, prompt_form=args.prompt_form,
        head=HeadConfig(hidden_dim=spec.head_hidden_dim, pooling=args.pooling,
                        factorized_slots=args.factorized_slots and slot_names is not None,
                        prosody=args.prosody and spec.supports_prosody),
    )
    config.method = method
    if args.init_from:
        adapter_set = AdapterSet.load(args.init_from, device=device)
        backbone.identity.check_compatible(adapter_set.backbone_identity)
        if (adapter_set.config.labels, adapter_set.config.vocab) != (config.labels, config.vocab):
            raise SystemExit(f"{args.init_from} was trained with other labels than {args.corpus}")
    else:
        adapter_set = AdapterSet.create(config, backbone)
    if args.train_only:
        keep = {part.strip() for part in args.train_only.split(",")}
        parts = {"e": adapter_set.e_adapters, "l": adapter_set.featurizer, "p": adapter_set.p_adapter,
                 "head": adapter_set.head}
        for name, module in parts.items():
            if module is not None and name not in keep:
                module.requires_grad_(False)
    return adapter_set


def _optimizer(args: argparse.Namespace, adapter_set: AdapterSet, loss_fn: nn.Module,
               backbone: nn.Module | None) -> tuple[torch.optim.Optimizer, dict[str, float]]:
    """AdamW with ELP's per-group learning rates (the preset's, overridden by the flags)."""
    head_lr, l_lr, e_lr = get_task(args.task).training.rates(args.lr_preset)
    rates = {"head": args.lr_head or head_lr, "l": args.lr_l or l_lr, "e": args.lr_e or e_lr,
             "backbone": args.lr_backbone}
    rates["p"] = args.lr_p or rates["l"]
    groups = _param_groups(adapter_set, loss_fn, backbone, rates)
    groups = [g | {"params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=args.weight_decay), rates


def _target_classes(task: str, splits: Splits) -> list[str] | None:
    """What class indices stand for: the set's labels, or for tasks whose target is another row field
    (speakers) the training rows' values of it; None for text targets."""
    field = get_task(task).target_field
    if field == "text":
        return None
    return splits.labels if field == "label" else sorted({getattr(r, field) for r in splits.train})


def _live_features(args: argparse.Namespace, model: MultiAdapterModel, splits: Splits, device) -> LiveFeatures:
    augment_config = task_augment(args.task, enabled=not args.no_augment, telephone_prob=args.telephone_prob)
    dataset = ClipDataset(splits.train, args.task, _target_classes(args.task, splits), augment_config, seed=args.seed)
    sampler = LengthBucketSampler(dataset.lengths(), args.batch_size, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.num_workers,
                        persistent_workers=args.num_workers > 0)
    return LiveFeatures(model, loader, sampler, dataset, device, args.amp)


def _resume(loop: TrainingLoop, run_dir: Path, checkpoint_modules: dict[str, nn.Module]) -> None:
    """Continue from the run's last checkpoint: weights, optimiser, loop state, schedule, best set."""
    loop.state = LoopState(**load_checkpoint(run_dir, checkpoint_modules, loop.optimizer))
    loop.best_weights = {"adapter_set": copy.deepcopy(checkpoint_modules["adapter_set"].state_dict())}
    with warnings.catch_warnings():  # replaying the schedule, not skipping an optimizer step
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for _ in range(loop.state.step):
            loop.scheduler.step()
    if (run_dir / "best" / "adapter_model.safetensors").exists():
        loop.best_weights = {"adapter_set": AdapterSet.load(run_dir / "best").state_dict()}


def _make_loop(args: argparse.Namespace, run_dir: Path, source: LiveFeatures, loss_fn: nn.Module,
               splits: Splits, started: float) -> tuple[TrainingLoop, dict[str, float], tqdm]:
    """The loop over live batches: per-group AdamW, warm-up + cosine over steps or minutes, validation
    every ``--eval-every`` steps, checkpoints at each validation, the best set kept in ``run_dir/best``."""
    model, full = source.model, args.method.lower() == "full"
    adapter_set = model.adapter_sets[TRAIN_KEY]
    optimizer, rates = _optimizer(args, adapter_set, loss_fn, model.backbone if full else None)
    total_steps = args.max_steps or args.epochs * len(source.sampler)
    tracked: dict[str, nn.Module] = {"adapter_set": adapter_set} | ({"backbone": model.backbone} if full else {})
    checkpoint_modules = {"adapter_set": adapter_set, "loss": loss_fn} | ({"backbone": model.backbone} if full else {})

    def validate() -> Validation:
        metrics = evaluate_set(model, TRAIN_KEY, splits.valid, splits.trials.get("valid"))
        return Validation(*headline(args.task, metrics))

    def save_set(state: LoopState, folder: str, best_step: int | None) -> None:
        adapter_set.config.training = training_record(args, splits, rates, state.step, best_step)
        adapter_set.save(run_dir / folder)

    def validated(state: LoopState, loss: float, result: Validation) -> None:
        progress.write(f"step {state.step}: loss {loss:.4f} valid {result.name} {result.value:.4f}")
        save_checkpoint(run_dir, checkpoint_modules, optimizer, state.to_dict())
        if args.keep_validated and not full:
            save_set(state, f"step-{state.step:06d}", None)

    def stepped(state: LoopState, loss: float) -> None:
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.3f}", best=state.best)

    budget_s = 60 * args.max_minutes
    scheduler = cosine_scheduler(optimizer, total_steps, args.warmup, budget_s, started)
    loop = TrainingLoop(
        get_task(args.task), source, loss_fn, optimizer, scheduler, validate,
        LoopSettings(total_steps, args.patience, eval_every=args.eval_every, budget_s=budget_s, clip_grad_norm=5.0),
        tracked, best_weights={"adapter_set": copy.deepcopy(adapter_set.state_dict())},
        on_improved=lambda state: None if full else save_set(state, "best", state.step),
        on_validated=validated, on_step=stepped, started=started)
    if args.resume and (run_dir / "checkpoint.json").exists():
        _resume(loop, run_dir, checkpoint_modules)
    progress = tqdm(total=total_steps, initial=loop.state.step, disable=args.quiet,
                    desc=f"{args.task}/{args.method.lower()}")
    return loop, rates, progress


def training_record(args: argparse.Namespace, splits: Splits, rates: dict[str, float], step: int,
                    best_step: int | None) -> dict:
    """How this run trained the set, written into every set it saves: a checkpoint kept at a validation
    (``best``, ``step-N``) must not carry the record of the set it started from (``--init-from``)."""
    return {
        "corpus": str(Path(args.corpus)), "steps": step, "best_step": best_step, "batch_size": args.batch_size,
        "learning_rates": rates, "augment": not args.no_augment, "seed": args.seed, "method": args.method.lower(),
        "train_clips": len(splits.train),
    } | ({"extra_corpora": splits.extra_corpora, "extra_repeat": args.extra_repeat} if splits.extra_corpora else {}) \
      | {name: value for name, value in (("init_from", args.init_from), ("train_only", args.train_only),
                                         ("telephone_prob", args.telephone_prob)) if value}


def train(args: argparse.Namespace) -> TrainResult:
    seed_everything(args.seed)
    started = time.perf_counter()
    device = torch.device(args.device)
    method = args.method.lower()
    corpus = Path(args.corpus)
    run_dir = Path(args.run_dir or f"runs/{args.task}-{method}")
    run_dir.mkdir(parents=True, exist_ok=True)
    splits = _read_splits(args, corpus)
    backbone = load_backbone(args.backbone, device=device)
    adapter_set = _build_set(args, method, backbone, splits.labels, device)
    full = method == "full"
    if full:
        backbone.unfreeze()
    model = MultiAdapterModel(backbone)
    model.add_adapter_set(TRAIN_KEY, adapter_set)
    classes = _target_classes(args.task, splits)
    loss_fn = get_task(args.task).build_loss(adapter_set, len(classes or [])).to(device)
    source = _live_features(args, model, splits, device)
    loop, rates, progress = _make_loop(args, run_dir, source, loss_fn, splits, started)
    state = loop.run()
    progress.close()
    loop.restore_best()
    model.eval()
    valid_metrics = evaluate_set(model, TRAIN_KEY, splits.valid, splits.trials.get("valid"))
    test_metrics = evaluate_set(model, TRAIN_KEY, splits.test, splits.trials.get("test")) if args.test else None
    write_back_metrics(adapter_set, valid_metrics, test_metrics)
    adapter_set.config.training = training_record(args, splits, rates, state.step, state.best_step)
    adapter_set.config.description = f"{method.upper()} {args.task} set trained by elp-train on {corpus.name}"
    output = str(adapter_set.save(args.out)) if args.out and not full else None
    (run_dir / "history.json").write_text(json.dumps(state.history, indent=1))
    _write_plots(run_dir, args.task, state.history, valid_metrics, test_metrics)
    trained = sum(p.numel() for p in adapter_set.parameters()) + (
        sum(p.numel() for p in backbone.parameters()) if full else 0)
    result = TrainResult(args.task, method, trained, public(valid_metrics),
                         public(test_metrics) if test_metrics else None, state.step,
                         round(time.perf_counter() - started, 1), output)
    if args.results_json:
        with open(args.results_json, "a") as fh:
            fh.write(json.dumps(result.__dict__) + "\n")
    return result


def _write_plots(run_dir: Path, task: str, history: list[dict], valid: dict, test: dict | None) -> None:
    from training.plots import plot_confusion_matrix, plot_det_curve, plot_training_curves

    if history:
        plot_training_curves(history, run_dir / "training_curves.png")
    final = test or valid
    if "_scores" in final:  # scored trials
        plot_det_curve(final["_scores"], final["_labels"], run_dir / "det_curve.png")
    elif "_confusion" in final:  # classes
        plot_confusion_matrix(np.array(final["_confusion"]), final["_labels"], run_dir / "confusion_matrix.png")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = train(args)
    print(json.dumps(result.__dict__, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
