"""Choose the weight of a decoder label set's companion classifier (``elp.heads.companion``) on validation clips.

Each clip goes once through the served model (``MultiAdapterModel.head_outputs``: the shared encoder pass,
the trailing zeros, the companion on the clip's frames); hooks keep the decoder's label logits and the
companion's logits, so every weight of the grid scores ``log_softmax(decoder) + w * log_softmax(companion)``
on the same outputs. The weight with the best accuracy on ``--valid`` wins (ties: the smaller weight), among
weights that keep each ``--guard`` corpus within ``--guard-max-drop`` points of the decoder alone (w = 0).
The chosen weight and the grid are written into the set (``--out``).

    python -m training.companion_weight adapters_store/language-whisper --valid data/language-valid \\
        --guard data/language --weights 0 0.25 0.5 0.75 1 1.5 --out adapters_store/language-whisper
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.heads.companion import fused_log_probs
from training.data.manifest import filter_split, read_manifest
from training.dataset import load_audio

KEY = "set"


@torch.inference_mode()
def branch_logits(model: MultiAdapterModel, corpus: str, split: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The decoder's and the companion's logits (clips x labels) of a corpus split, and the true label indices."""
    adapter_set = model.adapter_sets[KEY]
    labels = adapter_set.config.labels or []
    rows = filter_split(read_manifest(Path(corpus) / f"{adapter_set.task}.jsonl"), split)
    if not rows:
        raise SystemExit(f"{corpus} has no {split} clips of task {adapter_set.task}")
    kept: dict[str, list[torch.Tensor]] = {"decoder": [], "companion": []}
    hooks = [adapter_set.head.register_forward_hook(lambda _m, _i, out: kept["decoder"].append(out.float())),
             adapter_set.companion.register_forward_hook(lambda _m, _i, out: kept["companion"].append(out.float()))]
    try:
        for row in rows:
            model.head_outputs([torch.from_numpy(load_audio(row.path))], [KEY])
    finally:
        for hook in hooks:
            hook.remove()
    truth = np.array([labels.index(r.label) for r in rows])
    return torch.cat(kept["decoder"]), torch.cat(kept["companion"]), truth


def accuracy(decoder: torch.Tensor, companion: torch.Tensor, truth: np.ndarray, weight: float) -> float:
    fused = fused_log_probs(decoder, companion, weight)
    return round(100 * float((fused.argmax(-1).numpy() == truth).mean()), 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="a decoder label set with a companion (elp.convert.whisper_decoder_set --companion)")
    p.add_argument("--valid", required=True, help="corpus folder whose --split clips choose the weight")
    p.add_argument("--guard", nargs="*", default=[], help="corpus folders whose --split clips must not drop")
    p.add_argument("--guard-max-drop", type=float, default=1.0, help="accuracy points below the decoder alone")
    p.add_argument("--split", default="valid")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    p.add_argument("--out", help="write the set with the chosen weight here")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--dtype", default="auto", help="the encoder as served: auto (int8 on VNNI CPUs), int8, float32")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    adapter_set = AdapterSet.load(args.adapter).eval()
    if adapter_set.companion is None:
        raise SystemExit(f"{args.adapter} has no companion classifier")
    quantization = None if args.dtype == "float32" else args.dtype
    model = MultiAdapterModel(load_backbone(args.backbone, quantization=quantization))
    model.add_adapter_set(KEY, adapter_set)
    valid = branch_logits(model, args.valid, args.split)
    guards = {corpus: branch_logits(model, corpus, args.split) for corpus in args.guard}
    grid = [{"weight": w, "valid": accuracy(*valid, w), **{g: accuracy(*out, w) for g, out in guards.items()}}
            for w in sorted(set(args.weights) | {0.0})]
    alone = grid[0]
    eligible = [row for row in grid if all(row[g] >= alone[g] - args.guard_max_drop for g in guards)]
    best = max(eligible, key=lambda row: (row["valid"], -row["weight"]))
    for row in grid:
        print(json.dumps(row), flush=True)
    print(json.dumps({"chosen": best, "clips": {"valid": len(valid[2]), **{g: len(o[2]) for g, o in guards.items()}}}))
    if args.out:
        config = copy.deepcopy(adapter_set.config)
        config.companion.weight = best["weight"]
        config.training = (config.training or {}) | {"companion_weight": {
            "grid": grid, "chosen": best, "valid": args.valid, "guard": args.guard, "split": args.split,
            "guard_max_drop": args.guard_max_drop, "dtype": args.dtype}}
        chosen = AdapterSet(config)
        chosen.load_state_dict(adapter_set.state_dict(), strict=True)
        chosen.save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
