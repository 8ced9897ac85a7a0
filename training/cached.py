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
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from elp import AdapterSet, MultiAdapterModel, load_backbone, pad_waveforms
from elp.adapter_set import update_digest
from elp.heads import AMSoftmaxLoss, build_head, ctc_greedy_decode
from elp.heads.prosody import clip_prosody
from training.data.manifest import filter_split, read_manifest, read_trials
from training.dataset import TASK_AUGMENT, AugmentConfig, augment, load_audio
from training.evaluation import headline, length_batches, public
from training.loop import warmup_cosine
from training.metrics import cer, unweighted_accuracy, verification_metrics, weighted_accuracy, wer
from training.suites.guard import check_training_rows

KEY = "set"


@torch.no_grad()
def encode_rows(
    model: MultiAdapterModel, rows, batch_size: int = 16, augment_config: AugmentConfig | None = None, seed: int = 0,
    prosody: dict[str, torch.Tensor] | None = None, featurizer: nn.Module | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Per clip path: the real frames of every layer output, fp16; each clip augmented first when
    ``augment_config`` is given (seeded by ``seed`` and the clip's position, so reruns match).
    A ``prosody`` dict is filled with each clip's prosody statistics of the same (augmented) audio.
    With a ``featurizer`` its output is kept instead (a one-element list per clip)."""
    cache: dict[str, list[torch.Tensor]] = {}
    position = {r.path: i for i, r in enumerate(rows)}

    def audio(row) -> torch.Tensor:
        wave = load_audio(row.path)
        if augment_config is not None:
            wave = augment(wave, np.random.default_rng((seed, position[row.path])), augment_config)
        return torch.from_numpy(wave)

    for batch in length_batches(rows, batch_size):
        waves = [audio(r) for r in batch]
        if prosody is not None:
            prosody.update({row.path: clip_prosody(wave) for row, wave in zip(batch, waves, strict=True)})
        padded, lengths = pad_waveforms(waves)
        encoded = model.encode(padded, lengths, [KEY] * len(batch))
        states = encoded.hidden_states if featurizer is None else [featurizer(encoded.hidden_states)]
        for i, row in enumerate(batch):
            frames = int(encoded.lengths[i])
            cache[row.path] = [state[i, :frames].to(torch.float16).clone() for state in states]
    return cache


def cache_signature(model: MultiAdapterModel, rows, batch_size: int, augment_config: AugmentConfig | None,
                    seed: int, prosody: bool, featurizer: nn.Module | None) -> str:
    """What an encoder pass depends on: backbone weights, the set's E- and P-adapters (and the frozen
    featurizer when its output is cached), the clips, the augmentation and its seed, the batching."""
    adapter_set = model.adapter_sets[KEY]
    parts = {
        "layout": 1, "backbone": model.backbone.identity.fingerprint,
        "backbone_changes": adapter_set.backbone_change_signature(),
        "featurizer": None if featurizer is None
        else update_digest(hashlib.sha256(), featurizer.state_dict()).hexdigest(),
        "clips": hashlib.sha256("\n".join(r.path for r in rows).encode()).hexdigest(),
        "augment": dataclasses.asdict(augment_config) if augment_config is not None else None,
        "seed": seed if augment_config is not None else None, "batch_size": batch_size, "prosody": prosody,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def encode_rows_cached(cache_dir: str | None, model: MultiAdapterModel, rows, batch_size: int = 16,
                       augment_config: AugmentConfig | None = None, seed: int = 0,
                       prosody: dict[str, torch.Tensor] | None = None, featurizer: nn.Module | None = None,
                       ) -> dict[str, list[torch.Tensor]]:
    """:func:`encode_rows`, kept on disk under ``cache_dir`` (safetensors, one file per signature) so
    that refits of the same set on the same clips skip the encoder pass (~15 min per view of the
    full-wide corpus on two CPU cores). Without ``cache_dir`` it just encodes."""
    if cache_dir is None:
        return encode_rows(model, rows, batch_size, augment_config, seed, prosody, featurizer)
    signature = cache_signature(model, rows, batch_size, augment_config, seed, prosody is not None, featurizer)
    file = Path(cache_dir) / f"{signature}.safetensors"
    if file.is_file():
        tensors = load_file(file)
        paths = [r.path for r in rows]
        layers = sum(1 for name in tensors if name.startswith("0.") and name[2:].isdigit())
        if prosody is not None:
            prosody.update({path: tensors[f"{i}.prosody"] for i, path in enumerate(paths)})
        return {path: [tensors[f"{i}.{layer}"] for layer in range(layers)] for i, path in enumerate(paths)}
    cache = encode_rows(model, rows, batch_size, augment_config, seed, prosody, featurizer)
    index = {r.path: i for i, r in enumerate(rows)}
    tensors = {f"{index[path]}.{layer}": state for path, states in cache.items() for layer, state in enumerate(states)}
    if prosody is not None:
        tensors |= {f"{index[path]}.prosody": value.contiguous() for path, value in prosody.items() if path in index}
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".partial")
    save_file(tensors, partial)
    partial.replace(file)
    return cache


class Precomputed(nn.Module):
    """Stands in for a frozen featurizer whose output was cached: passes that output through."""

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        return layers[0]


def transplant(target: AdapterSet, source: AdapterSet) -> AdapterSet:
    """A fresh-headed set for ``target``'s task and labels on ``source``'s E-, P- and L-adapters.

    Spoken-language understanding on top of a recogniser's representation: an intent set that starts
    from the ASR set's adapters hears words it was never given a command for (s3prl's and Lugosch et
    al.'s ASR-pretrained SLU). Only the head is new; the result is an ordinary self-contained set."""
    if source.config.backbone.get("fingerprint") != target.config.backbone.get("fingerprint"):
        raise ValueError("both sets must be trained on the same backbone")
    config = copy.deepcopy(target.config)
    for part in ("e_adapter", "p_adapter", "l_adapter", "weighted_sum_layers"):
        setattr(config, part, copy.deepcopy(getattr(source.config, part)))
    config.metrics, config.weights_sha256 = {}, None
    config.training = {"adapters_from": {"task": source.task, "description": source.config.description,
                                         "weights_sha256": source.config.weights_sha256}}
    result = AdapterSet(config)
    moved = source.backbone_change_state() | {f"featurizer.{k}": v for k, v in source.featurizer.state_dict().items()}
    missing, unexpected = result.load_state_dict(moved, strict=False)
    if unexpected or any(not name.startswith("head.") for name in missing):
        raise ValueError(f"adapter shapes differ: missing {missing}, unexpected {unexpected}")
    return result


def warm_start(new_head: nn.Module, old_head: nn.Module) -> None:
    """Copy the old head's weights into a rebuilt one: tensors of equal shape as they are; a layer that
    gained inputs (the prosody branch widens the output layer) keeps its old columns first and starts
    the new ones at zero, so the new head's answers equal the old head's until training moves them."""
    old = old_head.state_dict()
    with torch.no_grad():
        for name, tensor in new_head.state_dict().items():
            source = old.get(name)
            if source is None:
                continue
            if source.shape == tensor.shape:
                tensor.copy_(source)
            elif source.dim() == 2 and source.shape[0] == tensor.shape[0] and source.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : source.shape[1]] = source
            else:
                raise ValueError(f"cannot warm-start {name}: {tuple(source.shape)} -> {tuple(tensor.shape)}")


def speaker_prototypes(adapter_set: AdapterSet, cache, rows, speakers: list[str], prosody=None) -> torch.Tensor:
    """(speakers, dim) mean normalised embedding of each training speaker's clips under the current head.

    Starting the AM-softmax class weights here instead of at random: random class weights give a
    loss of ~7 whose gradients first scramble a trained embedding (validation EER 7.2% -> 9.6-10.6%
    in the first epochs of a refit); prototypes start the loss where the embedding already is."""
    adapter_set.eval()
    sums = torch.zeros(len(speakers), adapter_set.head.embedding_size)
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            chunk = rows[start : start + 32]
            paths = [r.path for r in chunk]
            embeddings = _outputs_for(adapter_set, cache, paths, prosody)
            for row, embedding in zip(chunk, embeddings, strict=True):
                sums[speakers.index(row.speaker)] += embedding.float()
    return torch.nn.functional.normalize(sums, dim=-1)


def mask_frames(states: list[torch.Tensor], generator: torch.Generator, spans: int = 2,
                max_frames: int = 10) -> list[torch.Tensor]:
    """Zero the same random spans of frames in every layer of one clip (time masks)."""
    frames = states[0].shape[0]
    keep = torch.ones(frames, 1, dtype=states[0].dtype)
    for _ in range(spans):
        width = int(torch.randint(0, max_frames + 1, (1,), generator=generator))
        if 0 < width < frames:
            start = int(torch.randint(0, frames - width, (1,), generator=generator))
            keep[start : start + width] = 0
    return [state * keep for state in states]


def _head_outputs(adapter_set: AdapterSet, states: list[list[torch.Tensor]],
                  prosody: list[torch.Tensor] | None = None) -> torch.Tensor:
    lengths = torch.tensor([s[0].shape[0] for s in states])
    layers = [
        nn.utils.rnn.pad_sequence([s[k].float() for s in states], batch_first=True) for k in range(len(states[0]))
    ]
    # a head that reads prosody raises when it is missing; the others ignore it
    return adapter_set.head(adapter_set.featurizer(layers), lengths,
                            torch.stack(prosody) if prosody is not None else None)


def _outputs_for(adapter_set: AdapterSet, cache, paths: list[str], prosody=None) -> torch.Tensor:
    """Head outputs for cached clips by path (with their cached prosody when given)."""
    return _head_outputs(adapter_set, [cache[p] for p in paths], [prosody[p] for p in paths] if prosody else None)


def evaluate_cached(adapter_set: AdapterSet, cache, rows, trials=None, prosody=None, with_lm: bool = False) -> dict:
    """Validation/test metrics from cached layers (and cached prosody, for heads that read it);
    ``with_lm`` adds an ASR set's CER and WER under its own LM beam search (``lm_cer``, ``lm_wer``)."""
    adapter_set.eval()

    def outputs(paths: list[str]) -> torch.Tensor:
        return _outputs_for(adapter_set, cache, paths, prosody)

    with torch.no_grad():
        if adapter_set.task == "verification":
            paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
            emb = {p: outputs([p])[0] for p in paths}
            scores = [float(emb[t.path_a] @ emb[t.path_b]) for t in trials]
            return verification_metrics(scores, [t.label for t in trials])
        if adapter_set.task == "asr":  # greedy, and with the set's LM when it has one (what is served)
            vocab, hyps, lm_hyps = adapter_set.config.vocab or [], [], []
            for start in range(0, len(rows), 32):
                chunk = rows[start : start + 32]
                states = [cache[r.path] for r in chunk]
                log_probs = outputs([r.path for r in chunk])
                for lp, state in zip(log_probs, states, strict=True):
                    frames = state[0].shape[0]
                    hyps.append(ctc_greedy_decode(lp, frames, vocab))
                    if with_lm:
                        lm_hyps.append(adapter_set.decode_ctc(lp[:frames]))
            refs = [r.text or "" for r in rows]
            metrics = {"cer": cer(refs, hyps), "wer": wer(refs, hyps)}
            if with_lm:
                metrics |= {"lm_cer": cer(refs, lm_hyps), "lm_wer": wer(refs, lm_hyps)}
            return metrics
        labels = adapter_set.config.labels or []
        guesses = []
        for start in range(0, len(rows), 32):
            chunk = rows[start : start + 32]
            logits = outputs([r.path for r in chunk])
            guesses += [labels[i] for i in logits.argmax(-1).tolist()]
        truth = [r.label for r in rows]
        return {"accuracy": weighted_accuracy(truth, guesses),
                "unweighted_accuracy": unweighted_accuracy(truth, guesses)}


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


def extra_splits(folder: str, task: str, labels: list[str] | None) -> tuple[dict, list, list]:
    """(record, train rows, valid rows) of one extra corpus' ``<task>.jsonl``; its test rows are left
    unread. Labels outside the set's own raise (a set cannot learn a class it has no output for)."""
    manifest = Path(folder) / f"{task}.jsonl"
    rows = read_manifest(manifest)
    train, valid = filter_split(rows, "train"), filter_split(rows, "valid")
    if not train and not valid:
        raise SystemExit(f"{manifest} has no train or valid rows")
    if labels is not None:
        unknown = sorted({r.label for r in (*train, *valid)} - set(labels))
        if unknown:
            raise SystemExit(f"{manifest}: labels the set does not have: {unknown[:5]}")
    record = {"path": str(folder), "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
              "train": len(train), "valid": len(valid)}
    return record, train, valid


def main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate: constant, or a 5%% linear warm-up then a cosine to zero over --epochs")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model = MultiAdapterModel(load_backbone(args.backbone))
    adapter_set = AdapterSet.load(args.adapter)
    if args.adapters_from:
        adapter_set = transplant(adapter_set, AdapterSet.load(args.adapters_from))
    model.add_adapter_set(KEY, adapter_set)
    task = adapter_set.task
    if args.context_blocks and task != "asr":
        raise SystemExit("--context-blocks is for ASR sets")
    with_lm = args.select == "lm"
    if with_lm and adapter_set.language_model is None:
        raise SystemExit("--select lm needs an ASR set with a language model (elp-add-lm)")
    featurizer = adapter_set.featurizer if args.freeze_featurizer else None
    feature_dim = adapter_set.featurizer.output_dim
    corpus = Path(args.corpus)
    rows = read_manifest(corpus / f"{task}.jsonl")
    splits = {s: filter_split(rows, s) for s in ("train", "valid", "test")}
    check_training_rows(splits["train"], f"{corpus / task}.jsonl (train split)")
    trials = {}
    if task == "verification":
        if args.extra_corpus:
            raise SystemExit("--extra-corpus is for tasks scored per clip (not verification's trial lists)")
        trials = {s: read_trials(corpus / f"verification_trials_{s}.txt") for s in ("valid", "test")}
    extra = [extra_splits(folder, task, adapter_set.config.labels if task in ("intent", "emotion") else None)
             for folder in args.extra_corpus]
    for record, train, _ in extra:  # extra training clips obey the held-out registry too
        check_training_rows(train, f"{record['path']} (train split)")
    # validation sources: the corpus' own split first, then each extra corpus' (selection averages them)
    valid_sources = {"corpus": splits["valid"]} | {record["path"]: valid for record, _, valid in extra}
    wants_prosody = args.prosody or adapter_set.head.uses_prosody
    # per view: each clip's prosody statistics of that view's audio (None: the head reads none)
    prosody_views: list[dict[str, torch.Tensor] | None] = [
        {} if wants_prosody else None for _ in range(args.augmented_views + 1)
    ]
    prosody = prosody_views[0]
    # each corpus is its own encoder pass (and cache file), so a refit with other extra clips reuses the rest
    blocks = [[r for split in splits.values() for r in split], *[[*train, *valid] for _, train, valid in extra]]
    train_blocks = [splits["train"], *[train for _, train, _ in extra]]
    cache = {}
    for block in blocks:
        cache |= encode_rows_cached(args.cache_dir, model, block, prosody=prosody, featurizer=featurizer)
    views = [cache]
    augment_config = AugmentConfig(**TASK_AUGMENT.get(task, {}) | {"time_mask_prob": 0.0})
    for view in range(1, args.augmented_views + 1):
        views.append({})
        for block in train_blocks:
            views[-1] |= encode_rows_cached(args.cache_dir, model, block, augment_config=augment_config,
                                            seed=args.seed * 1000 + view, prosody=prosody_views[view],
                                            featurizer=featurizer)
    splits["train"] = [r for block in train_blocks for r in block]
    print(json.dumps({"cached_clips": len(cache), "augmented_views": args.augmented_views,
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)

    if featurizer is not None:  # from here on the head reads the cached featurizer output
        adapter_set.featurizer = Precomputed()
    before = {s: evaluate_cached(adapter_set, cache, splits[s], trials.get(s), prosody, with_lm)
              for s in ("valid", "test")}
    print(json.dumps({"before": before}), flush=True)
    new_head = bool(args.pooling or args.factorized_slots or args.prosody or args.adapters_from
                    or args.dropout is not None)
    if new_head:
        # A new head on the set's own E, P and L (fresh weights, or the old ones with --warm-start): the
        # refit then picks the best epoch by validation, which may be worse than "before" for a fresh
        # head; the saved set records both.
        config = adapter_set.config
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
        config = adapter_set.config
        config.head.context_blocks, config.head.context_kernel = args.context_blocks, args.context_kernel
        old_head = adapter_set.head
        adapter_set.head = build_head(config.head, task, feature_dim, config.num_outputs)
        warm_start(adapter_set.head, old_head)
    trainable = [*adapter_set.featurizer.parameters(), *adapter_set.head.parameters()]
    if task == "verification":
        speakers = sorted({r.speaker for r in splits["train"]})
        loss_fn: nn.Module = AMSoftmaxLoss(adapter_set.head.embedding_size, len(speakers))
        targets = {r.path: speakers.index(r.speaker) for r in splits["train"]}
        with torch.no_grad():
            loss_fn.weight.copy_(speaker_prototypes(adapter_set, cache, splits["train"], speakers, prosody))
    elif task == "asr":
        loss_fn = nn.CTCLoss(blank=0, zero_infinity=True)
        index = {c: i for i, c in enumerate(adapter_set.config.vocab or [])}
        targets = {r.path: [index[c] for c in (r.text or "") if c in index] for r in splits["train"]}
    else:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
        labels = adapter_set.config.labels or []
        targets = {r.path: labels.index(r.label) for r in splits["train"]}
    optimizer = torch.optim.AdamW([*trainable, *loss_fn.parameters()], lr=args.lr, weight_decay=args.weight_decay)
    name, best, higher = selection(task, before["valid"], with_lm)
    if extra:  # the starting score on the epochs' own scale: the mean over validation sources
        best = sum(selection(task, evaluate_cached(adapter_set, cache, source_rows, None, prosody, with_lm),
                             with_lm)[1] for source_rows in valid_sources.values()) / len(valid_sources)
    if new_head and not args.warm_start:
        best = -1.0 if higher else float("inf")  # the old head's score says nothing about the new one
    best_state, stale, history = copy.deepcopy(adapter_set.state_dict()), 0, []
    samples = [(view, r.path) for view in range(len(views)) for r in splits["train"]]
    total_steps = args.epochs * -(-len(samples) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda step: warmup_cosine(step, int(0.05 * total_steps), step / total_steps))
        if args.schedule == "cosine" else (lambda step: 1.0))
    mask_generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        adapter_set.train()
        order = torch.randperm(len(samples)).tolist()
        for start in range(0, len(order), args.batch_size):
            picked = [samples[i] for i in order[start : start + args.batch_size]]
            paths = [path for _, path in picked]
            states = [views[view][path] for view, path in picked]
            if args.frame_mask_prob:
                masked = torch.rand(len(states), generator=mask_generator) < args.frame_mask_prob
                states = [mask_frames(s, mask_generator) if m else s for s, m in zip(states, masked, strict=True)]
            output = _head_outputs(adapter_set, states,
                                   [prosody_views[view][path] for view, path in picked] if wants_prosody else None)
            if task == "asr":
                loss = loss_fn(output.float().transpose(0, 1), torch.tensor([i for p in paths for i in targets[p]]),
                               torch.tensor([s[0].shape[0] for s in states]),
                               torch.tensor([len(targets[p]) for p in paths]))
            else:
                loss = loss_fn(output, torch.tensor([targets[p] for p in paths]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        valid = evaluate_cached(adapter_set, cache, splits["valid"], trials.get("valid"), prosody, with_lm)
        value = selection(task, valid, with_lm)[1]
        per_source = {}
        if extra:
            per_source = {source: selection(task, evaluate_cached(adapter_set, cache, source_rows, None, prosody,
                                                                  with_lm), with_lm)[1]
                          for source, source_rows in valid_sources.items()}
            value = sum(per_source.values()) / len(per_source)
        history.append({"epoch": epoch + 1, "loss": loss.item(), f"valid_{name}": value}
                       | ({"valid_cer": valid["cer"], "valid_lm_cer": valid["lm_cer"]} if with_lm else {})
                       | ({f"valid_{name}_by_source": per_source} if extra else {}))
        print(json.dumps(history[-1]), flush=True)
        if (value > best) if higher else (value < best):
            best, best_state, stale = value, copy.deepcopy(adapter_set.state_dict()), 0
            _save_best_so_far(adapter_set, featurizer, args.out, history)
        else:
            stale += 1
            if stale >= args.patience:
                break
    adapter_set.load_state_dict(best_state)
    after = {s: evaluate_cached(adapter_set, cache, splits[s], trials.get(s), prosody, with_lm)
             for s in ("valid", "test")}
    extra_valid = {record["path"]: public(evaluate_cached(adapter_set, cache, valid, None, prosody, with_lm))
                   for record, _, valid in extra}
    if featurizer is not None:
        adapter_set.featurizer = featurizer
    print(json.dumps({"after": after} | ({"after_extra_valid": extra_valid} if extra else {})), flush=True)
    if task == "verification":
        adapter_set.config.threshold = float(after["valid"]["eer_threshold"])
    adapter_set.config.metrics = {"valid": public(after["valid"]), "test": public(after["test"]),
                                  "before_refit": {"valid": public(before["valid"]), "test": public(before["test"])}}
    if extra:
        adapter_set.config.metrics["valid_extra"] = extra_valid
    adapter_set.config.training = adapter_set.config.training | {
        "refit": {"stage": "cached featurizer output, head only" if args.freeze_featurizer
                  else "cached encoder pass, L-adapters + head", "epochs": len(history), "lr": args.lr,
                  "new_head": new_head, "warm_start": bool(new_head and args.warm_start),
                  "prosody": adapter_set.config.head.prosody, "dropout": adapter_set.config.head.dropout,
                  "augmented_views": args.augmented_views, "frame_mask_prob": args.frame_mask_prob,
                  "weight_decay": args.weight_decay, "freeze_featurizer": args.freeze_featurizer,
                  "context_blocks": args.context_blocks, "schedule": args.schedule, "select": args.select,
                  "finished": True, "corpus": args.corpus,
                  "extra_corpora": [record for record, _, _ in extra],
                  "selected_by": "mean of the validation scores of the corpus and each extra corpus" if extra
                  else "the corpus' validation split",
                  "label_smoothing": 0.1 if task in ("emotion", "intent") else None}}
    if args.description:
        adapter_set.config.description = args.description
    adapter_set.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
