"""Stage-two training on a cached encoder pass: refit a set's L-adapters and head on CPU.

The encoder pass (frozen backbone + the set's own E-adapters and P-adapter) is run once per clip
and its per-layer outputs are kept in memory (fp16); then only the featurizer and the head train,
for many epochs in minutes instead of hours. This is s3prl's "extract upstream features once"
applied to an adapter set: E and P stay as they are; use it to refit L and the head with other
regularisation or without augmentation that destroys a task's cues.

A single clean pass lets the head memorise the training clips (ASR training loss falls to ~0.1
while validation CER stays at 25%), so two regularisers stand in for on-the-fly augmentation:
``--augmented-views K`` caches K extra passes of every training clip through the waveform
augmentation of ``elp-train`` (speed, reverberation, noise, gain), and ``--frame-mask-prob``
zeroes random spans of frames in every cached layer at once (SpecAugment-style time masks on the
upstream features, as s3prl's ASR downstream does).

``--freeze-featurizer`` caches the L-adapters' output instead of every layer (~7x less memory: the
whole full-wide corpus fits) and trains the head alone; ``--context-blocks N`` gives an ASR head N
convolution blocks (:class:`elp.heads.ctc.ContextBlock`) that start as the identity, so the refit
starts at the set's own answers.

``--cache-dir DIR`` keeps each encoder pass on disk (safetensors, named by a digest of the backbone,
the set's E/P-adapters, the clips, the augmentation and its seed) so later refits of the same set
skip it; ``--schedule cosine`` anneals the learning rate; ``--select lm`` keeps the epoch that decodes
best under the ASR set's own LM (greedy CER and LM-decoded CER can disagree).

``--extra-corpus DIR --distill-corpus W`` teaches the set new clips without letting go of the old: on the main
corpus' training clips the loss adds W x the KL divergence from the starting set's outputs (learning without
forgetting, Li & Hoiem 2016), so what the set already did well is held while the extra clips pull.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads import build_head
from elp.tasks import get_task
from training.data.manifest import extra_splits, filter_split, read_manifest, read_trials
from training.dataset import task_augment
from training.evaluation import headline, public
from training.feature_cache import (
    KEY,
    CachedFeatures,
    Precomputed,
    encode_rows_cached,
    evaluate_cached,
    speaker_prototypes,
)
from training.loop import (
    LoopSettings,
    LoopState,
    TrainingLoop,
    Validation,
    constant_scheduler,
    cosine_scheduler,
    write_back_metrics,
)
from training.refit_start import transplant, warm_start
from training.suites.guard import DEFAULT_GUARD, guard_named
from training.train import trial_files


def selection(task: str, metrics: dict, with_lm: bool) -> tuple[str, float, bool]:
    """(name, value, higher_is_better) that picks the epoch: the task's headline metric, or for
    ``--select lm`` the mean of CER and WER under the set's LM (elp-add-lm's own criterion). Greedy CER
    can mislead here: a head that grows more confident gains greedily and loses under the LM."""
    if with_lm:
        return "lm_mean", (metrics["lm_cer"] + metrics["lm_wer"]) / 2, False
    return headline(task, metrics)


def _save_best_so_far(adapter_set: AdapterSet, featurizer: nn.Module | None, out: str, history: list[dict]) -> None:
    """Write the best set so far to ``out`` (marked unfinished) so that a long refit cut short still
    leaves a usable set; the finished refit overwrites it with test metrics and the full record."""
    cached_featurizer = adapter_set.featurizer
    if featurizer is not None:
        adapter_set.featurizer = featurizer
    training = adapter_set.config.training
    adapter_set.config.training = training | {"refit": {"finished": False, "history": history}}
    try:
        adapter_set.save(out)
    finally:
        adapter_set.featurizer, adapter_set.config.training = cached_featurizer, training


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="adapter-set folder to refit")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pooling", choices=["mean", "stats", "max"], help="rebuild the head with this pooling")
    p.add_argument("--factorized-slots", action="store_true", help="rebuild the head to score intent slots")
    p.add_argument("--prosody", action="store_true",
                   help="rebuild the head to also read pitch/loudness/tilt statistics (elp.heads.prosody)")
    p.add_argument("--warm-start", action="store_true",
                   help="the rebuilt head starts as the old one (same pooling; new inputs such as --prosody start "
                        "at zero weight), so it begins at the old head's answers")
    p.add_argument("--description", help="the saved set's description (default: the input set's)")
    p.add_argument("--dropout", type=float, help="rebuild the head with this dropout (before its layers)")
    p.add_argument("--adapters-from", help="start from this set's E-, P- and L-adapters with a fresh head")
    p.add_argument("--augmented-views", type=int, default=0,
                   help="extra cached passes of each training clip through elp-train's waveform augmentation")
    p.add_argument("--frame-mask-prob", type=float, default=0.0,
                   help="probability of time-masking a training clip's cached frames (2 spans, <= 10 frames each)")
    p.add_argument("--freeze-featurizer", action="store_true",
                   help="cache the L-adapters' output instead of every layer and train the head alone")
    p.add_argument("--context-blocks", type=int, default=0,
                   help="ASR: rebuild the CTC head with this many context blocks (they start as the identity)")
    p.add_argument("--context-kernel", type=int, default=9, help="frames each context block's convolution spans")
    p.add_argument("--select", choices=["greedy", "lm"], default="greedy",
                   help="ASR: keep the epoch with the best greedy validation CER, or with the best mean of CER "
                        "and WER under the set's own LM (the decoding it is served with)")
    p.add_argument("--cache-dir", help="keep each encoder pass here (safetensors, keyed by everything it depends "
                                       "on) and reuse it in later refits of the same set on the same clips")
    p.add_argument("--extra-corpus", action="append", default=[], metavar="DIR",
                   help="another corpus folder (same schema) whose train and valid rows of the task join the "
                        "refit; repeatable. Its test rows are never read (the test split stays --corpus's); the "
                        "epoch is then chosen by the mean of the validation scores of --corpus and each of these")
    p.add_argument("--held-out-guard", default=DEFAULT_GUARD, metavar="MODULE:FUNC",
                   help="the check every training row must pass; a corpus that holds out its own test people "
                        "names its builder's (language ID: training.corpus.languages:check_language_training_rows)")
    p.add_argument("--distill-corpus", type=float, default=0.0, metavar="W",
                   help="keep the set's own answers on --corpus's training clips: W x the KL divergence from the "
                        "starting set's outputs to the refit's (learning without forgetting; for --extra-corpus)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate: constant, or a 5%% linear warm-up then a cosine to zero over --epochs")
    return p


@dataclass
class Refit:
    """What a refit reads: the set, its clips per split (training joined by any extra corpus), the
    trial lists, the extra corpora and the validation sources whose mean selects the epoch."""

    model: MultiAdapterModel
    adapter_set: AdapterSet
    splits: dict[str, list]
    trials: dict
    extra: list[tuple[dict, list, list]]
    valid_sources: dict[str, list]
    featurizer: nn.Module | None
    with_lm: bool
    views: list[dict] = field(default_factory=list)
    prosody_views: list[dict | None] = field(default_factory=list)
    #: --corpus's own training rows (``splits["train"]`` later also holds the extra corpora's)
    corpus_train: list = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.adapter_set.task

    @property
    def cache(self) -> dict:
        return self.views[0]

    @property
    def prosody(self) -> dict | None:
        return self.prosody_views[0]

    def evaluate(self, rows, trials=None) -> dict:
        return evaluate_cached(self.adapter_set, self.cache, rows, trials, self.prosody, self.with_lm)


def _open_refit(args: argparse.Namespace) -> Refit:
    """Load the set (or transplant it) and read its splits, trials and extra corpora."""
    model = MultiAdapterModel(load_backbone(args.backbone))
    adapter_set = AdapterSet.load(args.adapter)
    if args.adapters_from:
        adapter_set = transplant(adapter_set, AdapterSet.load(args.adapters_from))
    model.add_adapter_set(KEY, adapter_set)
    task, spec = adapter_set.task, get_task(adapter_set.task)
    if args.context_blocks and spec.target_field != "text":
        raise SystemExit("--context-blocks is for CTC heads (ASR sets)")
    with_lm = args.select == "lm"
    if with_lm and adapter_set.language_model is None:
        raise SystemExit("--select lm needs an ASR set with a language model (elp-add-lm)")
    corpus = Path(args.corpus)
    rows = read_manifest(corpus / f"{task}.jsonl")
    splits = {s: filter_split(rows, s) for s in ("train", "valid", "test")}
    check_training_rows = guard_named(args.held_out_guard)
    check_training_rows(splits["train"], f"{corpus / task}.jsonl (train split)")
    trials = {split: read_trials(corpus / name) for split, name in trial_files(task).items()}
    if trials and args.extra_corpus:
        raise SystemExit("--extra-corpus is for tasks scored per clip (not trial lists)")
    extra = [extra_splits(folder, task, adapter_set.config.labels) for folder in args.extra_corpus]
    for record, train, _ in extra:  # extra training clips obey the held-out registry too
        check_training_rows(train, f"{record['path']} (train split)")
    # validation sources: the corpus' own split first, then each extra corpus' (selection averages them)
    valid_sources = {"corpus": splits["valid"]} | {record["path"]: valid for record, _, valid in extra}
    featurizer = adapter_set.featurizer if args.freeze_featurizer else None
    return Refit(model, adapter_set, splits, trials, extra, valid_sources, featurizer, with_lm,
                 corpus_train=list(splits["train"]))


def _encode(args: argparse.Namespace, refit: Refit, started: float) -> None:
    """The clean pass of every clip and ``--augmented-views`` augmented passes of the training clips
    (each corpus its own pass and cache file, so a refit with other extra clips reuses the rest)."""
    wants_prosody = args.prosody or refit.adapter_set.head.uses_prosody
    # per view: each clip's prosody statistics of that view's audio (None: the head reads none)
    refit.prosody_views = [{} if wants_prosody else None for _ in range(args.augmented_views + 1)]
    splits, extra, model, featurizer = refit.splits, refit.extra, refit.model, refit.featurizer
    blocks = [[r for split in splits.values() for r in split], *[[*train, *valid] for _, train, valid in extra]]
    train_blocks = [splits["train"], *[train for _, train, _ in extra]]
    cache = {}
    for block in blocks:
        cache |= encode_rows_cached(args.cache_dir, model, block, prosody=refit.prosody, featurizer=featurizer)
    refit.views = [cache]
    augment_config = task_augment(refit.task, time_mask_prob=0.0)
    for view in range(1, args.augmented_views + 1):
        refit.views.append({})
        for block in train_blocks:
            refit.views[-1] |= encode_rows_cached(args.cache_dir, model, block, augment_config=augment_config,
                                                  seed=args.seed * 1000 + view, prosody=refit.prosody_views[view],
                                                  featurizer=featurizer)
    splits["train"] = [r for block in train_blocks for r in block]
    print(json.dumps({"cached_clips": len(cache), "augmented_views": args.augmented_views,
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)


def _rebuild_head(args: argparse.Namespace, adapter_set: AdapterSet, feature_dim: int) -> bool:
    """A new head when the flags ask for one (fresh, or warm-started from the old); True if so."""
    config, task = adapter_set.config, adapter_set.task
    new_head = bool(args.pooling or args.factorized_slots or args.prosody or args.adapters_from
                    or args.dropout is not None)
    if new_head:
        # A new head on the set's own E, P and L (fresh weights, or the old ones with --warm-start): the
        # refit then picks the best epoch by validation, which may be worse than "before" for a fresh
        # head; the saved set records both.
        config.head.pooling = args.pooling or config.head.pooling
        config.head.factorized_slots = args.factorized_slots or config.head.factorized_slots
        config.head.prosody = args.prosody or config.head.prosody
        config.head.dropout = config.head.dropout if args.dropout is None else args.dropout
        old_head = adapter_set.head
        adapter_set.head = build_head(config.head, task, feature_dim, config.num_outputs,
                                      labels=config.labels, slot_names=config.slot_names)
        if args.warm_start:
            warm_start(adapter_set.head, old_head)
    if args.context_blocks:  # the old output layer carries over; the new blocks start as the identity
        config.head.context_blocks, config.head.context_kernel = args.context_blocks, args.context_kernel
        old_head = adapter_set.head
        adapter_set.head = build_head(config.head, task, feature_dim, config.num_outputs)
        warm_start(adapter_set.head, old_head)
    return new_head


#: label smoothing of a refit's class targets (a set's own labels; not speakers, not text)
LABEL_SMOOTHING = 0.1


def _loss_and_targets(refit: Refit) -> tuple[nn.Module, dict]:
    """The task's loss and each training clip's target (the row's value of the task's target field):
    character ids for text; indices of the set's labels, smoothed by 0.1; or indices of the training
    speakers, with the loss's class weights (AM-softmax) started at the speakers' prototypes."""
    adapter_set, train, spec = refit.adapter_set, refit.splits["train"], get_task(refit.task)
    field = spec.target_field
    if field == "text":
        index = {c: i for i, c in enumerate(adapter_set.config.vocab or [])}
        return spec.build_loss(adapter_set, 0), {r.path: [index[c] for c in (r.text or "") if c in index]
                                                 for r in train}
    if field == "label":
        labels = adapter_set.config.labels or []
        loss_fn = spec.build_loss(adapter_set, len(labels), label_smoothing=LABEL_SMOOTHING)
        return loss_fn, {r.path: labels.index(r.label) for r in train}
    classes = sorted({getattr(r, field) for r in train})
    loss_fn = spec.build_loss(adapter_set, len(classes))
    with torch.no_grad():
        loss_fn.weight.copy_(speaker_prototypes(adapter_set, refit.cache, train, classes, refit.prosody, field))
    return loss_fn, {r.path: classes.index(getattr(r, field)) for r in train}


def _validation(refit: Refit) -> Validation:
    """The epoch's score: the selection metric on the corpus' validation split, or with extra corpora
    the mean over every validation source (each also recorded)."""
    valid = refit.evaluate(refit.splits["valid"], refit.trials.get("valid"))
    name, value, higher = selection(refit.task, valid, refit.with_lm)
    extras = {"valid_cer": valid["cer"], "valid_lm_cer": valid["lm_cer"]} if refit.with_lm else {}
    if refit.extra:
        per_source = {source: selection(refit.task, refit.evaluate(rows), refit.with_lm)[1]
                      for source, rows in refit.valid_sources.items()}
        value = sum(per_source.values()) / len(per_source)
        extras[f"valid_{name}_by_source"] = per_source
    return Validation(name, value, higher, extras)


def _train(args: argparse.Namespace, refit: Refit, before: dict, new_head: bool) -> LoopState:
    """Epochs over the cached pass from the set's starting score; keeps (and restores) the best epoch."""
    adapter_set = refit.adapter_set
    loss_fn, targets = _loss_and_targets(refit)
    trainable = [*adapter_set.featurizer.parameters(), *adapter_set.head.parameters()]
    optimizer = torch.optim.AdamW([*trainable, *loss_fn.parameters()], lr=args.lr, weight_decay=args.weight_decay)
    name, best, higher = selection(refit.task, before["valid"], refit.with_lm)
    if refit.extra:  # the starting score on the epochs' own scale: the mean over validation sources
        best = sum(selection(refit.task, refit.evaluate(rows), refit.with_lm)[1]
                   for rows in refit.valid_sources.values()) / len(refit.valid_sources)
    if new_head and not args.warm_start:
        best = -1.0 if higher else float("inf")  # the old head's score says nothing about the new one
    samples = [(view, r.path) for view in range(len(refit.views)) for r in refit.splits["train"]]
    total_steps = args.epochs * -(-len(samples) // args.batch_size)
    scheduler = (cosine_scheduler(optimizer, total_steps, 0.05) if args.schedule == "cosine"
                 else constant_scheduler(optimizer))
    teacher = copy.deepcopy(adapter_set).eval() if args.distill_corpus > 0 else None
    source = CachedFeatures(adapter_set, refit.views, refit.prosody_views, samples, targets, args.batch_size,
                            sequence_targets=get_task(refit.task).target_field == "text",
                            frame_mask_prob=args.frame_mask_prob,
                            mask_generator=torch.Generator().manual_seed(args.seed), teacher=teacher,
                            teacher_paths=frozenset(r.path for r in refit.corpus_train),
                            teacher_weight=args.distill_corpus)
    loop = TrainingLoop(
        get_task(refit.task), source, loss_fn, optimizer, scheduler, lambda: _validation(refit),
        LoopSettings(total_steps, args.patience, history_key="epoch"), {"adapter_set": adapter_set},
        best_weights={"adapter_set": copy.deepcopy(adapter_set.state_dict())}, state=LoopState(best=best),
        on_improved=lambda state: _save_best_so_far(adapter_set, refit.featurizer, args.out, state.history),
        on_validated=lambda state, loss, result: print(json.dumps(state.history[-1]), flush=True))
    state = loop.run()
    loop.restore_best()
    return state


def _record(args: argparse.Namespace, refit: Refit, epochs: int, new_head: bool) -> dict:
    """The refit's entry in the set's training record."""
    config = refit.adapter_set.config
    return {"stage": "cached featurizer output, head only" if args.freeze_featurizer
            else "cached encoder pass, L-adapters + head", "epochs": epochs, "lr": args.lr,
            "new_head": new_head, "warm_start": bool(new_head and args.warm_start),
            "prosody": config.head.prosody, "dropout": config.head.dropout,
            "augmented_views": args.augmented_views, "frame_mask_prob": args.frame_mask_prob,
            "weight_decay": args.weight_decay, "freeze_featurizer": args.freeze_featurizer,
            "distill_corpus": args.distill_corpus,
            "context_blocks": args.context_blocks, "schedule": args.schedule, "select": args.select,
            "finished": True, "corpus": args.corpus,
            "extra_corpora": [record for record, _, _ in refit.extra],
            "selected_by": "mean of the validation scores of the corpus and each extra corpus" if refit.extra
            else "the corpus' validation split",
            "label_smoothing": LABEL_SMOOTHING if get_task(refit.task).target_field == "label" else None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    refit = _open_refit(args)
    adapter_set, featurizer = refit.adapter_set, refit.featurizer
    feature_dim = adapter_set.featurizer.output_dim
    _encode(args, refit, started)
    if featurizer is not None:  # from here on the head reads the cached featurizer output
        adapter_set.featurizer = Precomputed()
    before = {s: refit.evaluate(refit.splits[s], refit.trials.get(s)) for s in ("valid", "test")}
    print(json.dumps({"before": before}), flush=True)
    new_head = _rebuild_head(args, adapter_set, feature_dim)
    state = _train(args, refit, before, new_head)
    after = {s: refit.evaluate(refit.splits[s], refit.trials.get(s)) for s in ("valid", "test")}
    extra_valid = {record["path"]: public(refit.evaluate(valid)) for record, _, valid in refit.extra}
    if featurizer is not None:
        adapter_set.featurizer = featurizer
    print(json.dumps({"after": after} | ({"after_extra_valid": extra_valid} if refit.extra else {})), flush=True)
    write_back_metrics(adapter_set, after["valid"], after["test"],
                       before_refit={"valid": public(before["valid"]), "test": public(before["test"])},
                       **({"valid_extra": extra_valid} if refit.extra else {}))
    adapter_set.config.training = adapter_set.config.training | {
        "refit": _record(args, refit, len(state.history), new_head)}
    if args.description:
        adapter_set.config.description = args.description
    adapter_set.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
