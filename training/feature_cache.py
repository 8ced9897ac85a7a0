"""The cached encoder pass of ``training.cached``: encoding each clip once (kept in memory or on disk),
and training and evaluating a set's featurizer and head on those cached layer outputs.

:class:`CachedFeatures` is the feature source the shared training loop (:mod:`training.loop`) reads
when the backbone is not run per step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from elp import AdapterSet, MultiAdapterModel, pad_waveforms
from elp.adapter_set import update_digest
from elp.heads import ctc_greedy_decode
from elp.heads.prosody import clip_prosody
from elp.tasks import get_task
from training.dataset import AugmentConfig, augment, load_audio
from training.evaluation import length_batches
from training.loop import HeadBatch
from training.metrics import cer, unweighted_accuracy, verification_metrics, weighted_accuracy, wer

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
            # contiguous: a layer's output may be a strided view, which safetensors cannot write
            cache[row.path] = [state[i, :frames].to(torch.float16).clone(memory_format=torch.contiguous_format)
                               for state in states]
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



def speaker_prototypes(adapter_set: AdapterSet, cache, rows, speakers: list[str], prosody=None,
                       field: str = "speaker") -> torch.Tensor:
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
            embeddings = outputs_for(adapter_set, cache, paths, prosody)
            for row, embedding in zip(chunk, embeddings, strict=True):
                sums[speakers.index(getattr(row, field))] += embedding.float()
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


def head_outputs(adapter_set: AdapterSet, states: list[list[torch.Tensor]],
                  prosody: list[torch.Tensor] | None = None) -> torch.Tensor:
    lengths = torch.tensor([s[0].shape[0] for s in states])
    layers = [
        nn.utils.rnn.pad_sequence([s[k].float() for s in states], batch_first=True) for k in range(len(states[0]))
    ]
    # a head that reads prosody raises when it is missing; the others ignore it
    return adapter_set.head(adapter_set.featurizer(layers), lengths,
                            torch.stack(prosody) if prosody is not None else None)


def outputs_for(adapter_set: AdapterSet, cache, paths: list[str], prosody=None) -> torch.Tensor:
    """Head outputs for cached clips by path (with their cached prosody when given)."""
    return head_outputs(adapter_set, [cache[p] for p in paths], [prosody[p] for p in paths] if prosody else None)


def evaluate_cached(adapter_set: AdapterSet, cache, rows, trials=None, prosody=None, with_lm: bool = False) -> dict:
    """Validation/test metrics from cached layers (and cached prosody, for heads that read it);
    ``with_lm`` adds an ASR set's CER and WER under its own LM beam search (``lm_cer``, ``lm_wer``)."""
    adapter_set.eval()

    def outputs(paths: list[str]) -> torch.Tensor:
        return outputs_for(adapter_set, cache, paths, prosody)

    with torch.no_grad():
        evaluation = get_task(adapter_set.task).evaluation
        if evaluation == "trials":
            paths = sorted({p for t in trials for p in (t.path_a, t.path_b)})
            emb = {p: outputs([p])[0] for p in paths}
            scores = [float(emb[t.path_a] @ emb[t.path_b]) for t in trials]
            return verification_metrics(scores, [t.label for t in trials])
        if evaluation == "transcripts":  # greedy, and with the set's LM when it has one (what is served)
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


@dataclass
class CachedFeatures:
    """Training batches from cached layer outputs: (view, clip) samples in a fresh random order each
    epoch, each clip's frames time-masked with probability ``frame_mask_prob``. Targets are class
    indices, or label sequences when ``sequence_targets`` (CTC)."""

    adapter_set: AdapterSet
    views: list[dict[str, list[torch.Tensor]]]
    prosody_views: list[dict[str, torch.Tensor] | None]
    samples: list[tuple[int, str]]
    targets: dict
    batch_size: int
    sequence_targets: bool = False
    frame_mask_prob: float = 0.0
    mask_generator: torch.Generator | None = None
    #: a frozen copy of the starting set: its answers on ``teacher_paths`` hold the refit near them
    teacher: AdapterSet | None = None
    teacher_paths: frozenset[str] = frozenset()
    teacher_weight: float = 0.0

    def train(self) -> None:
        self.adapter_set.train()

    def batches(self, epoch: int) -> list[list[tuple[int, str]]]:
        order = torch.randperm(len(self.samples)).tolist()
        return [[self.samples[i] for i in order[start : start + self.batch_size]]
                for start in range(0, len(order), self.batch_size)]

    def _teacher_outputs(self, output: torch.Tensor, paths: list[str], states: list,
                         prosody: list[torch.Tensor] | None) -> dict:
        """HeadBatch's teacher fields: the starting set's outputs on the same (masked) frames of the rows it
        speaks for, in a tensor shaped like ``output`` (other rows zero, and masked out by ``teacher_rows``);
        the teacher runs on those rows only. Empty when there is no teacher or no such row in the batch."""
        rows = torch.tensor([path in self.teacher_paths for path in paths])
        if self.teacher is None or self.teacher_weight <= 0 or not bool(rows.any()):
            return {}
        chosen = rows.nonzero().flatten().tolist()
        with torch.no_grad():
            taught = head_outputs(self.teacher, [states[i] for i in chosen],
                                  [prosody[i] for i in chosen] if prosody is not None else None)
            full = output.detach().new_zeros(output.shape)
            full[chosen, : taught.shape[1]] = taught.to(full.dtype)
        return {"teacher": full, "teacher_rows": rows, "teacher_weight": self.teacher_weight}

    def forward(self, picked: list[tuple[int, str]]) -> HeadBatch:
        paths = [path for _, path in picked]
        states = [self.views[view][path] for view, path in picked]
        if self.frame_mask_prob:
            masked = torch.rand(len(states), generator=self.mask_generator) < self.frame_mask_prob
            states = [mask_frames(s, self.mask_generator) if m else s for s, m in zip(states, masked, strict=True)]
        wants_prosody = self.prosody_views[0] is not None
        prosody = [self.prosody_views[view][path] for view, path in picked] if wants_prosody else None
        output = head_outputs(self.adapter_set, states, prosody)
        teacher = self._teacher_outputs(output, paths, states, prosody)
        if self.sequence_targets:
            return HeadBatch(output, torch.tensor([i for p in paths for i in self.targets[p]]),
                             torch.tensor([s[0].shape[0] for s in states]),
                             torch.tensor([len(self.targets[p]) for p in paths]), **teacher)
        return HeadBatch(output, torch.tensor([self.targets[p] for p in paths]), **teacher)
