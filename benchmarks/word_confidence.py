"""Benchmark: does ``/asr``'s word ``confidence`` tell right words from wrong ones?

Every clip of a manifest split is answered as served (``MultiAdapterModel.predict``: transcript and words); the
answered words are matched to the reference in order (``difflib``: a word is right when it is part of a matching
block), and the table gives the ROC AUC of the confidence for "right", and how often the words in each
confidence band are right.

    python -m benchmarks.word_confidence --data near-valid=data/corpus/asr.jsonl:valid \\
        human=data/human/asr.jsonl:test [--adapter adapters_store/asr-default] [--name word_confidence]
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.common import REPO_ROOT, markdown_table, write_results
from elp import MultiAdapterModel, load_backbone
from training.data.manifest import filter_split, read_manifest
from training.evaluate import served_set
from training.evaluation import length_batches

BANDS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01))


def scored_words(model: MultiAdapterModel, manifest: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, right) of every answered word of the split's clips of the set's task."""
    from training.dataset import load_audio

    task = model.adapter_sets["asr"].config.task
    rows = [r for r in filter_split(read_manifest(manifest), split) if r.task == task]
    confidence, right = [], []
    for batch in length_batches(rows, 16):
        answers = model.predict([torch.from_numpy(load_audio(r.path)) for r in batch], ["asr"] * len(batch))
        for row, answer in zip(batch, answers, strict=True):
            said = answer.words or []
            matcher = difflib.SequenceMatcher(a=(row.text or "").split(), b=[w[0] for w in said], autojunk=False)
            matched = {block.b + k for block in matcher.get_matching_blocks() for k in range(block.size)}
            confidence += [w[3] for w in said]
            right += [i in matched for i in range(len(said))]
    return np.array(confidence), np.array(right)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=str(REPO_ROOT / "adapters_store" / "asr-default"))
    parser.add_argument("--backbone", default=str(REPO_ROOT / "models" / "whisper-base"))
    parser.add_argument("--data", nargs="+", required=True, metavar="NAME=MANIFEST:SPLIT")
    parser.add_argument("--name", default="word_confidence", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    model = MultiAdapterModel(load_backbone(args.backbone))
    # as served: a decoder set times its words
    model.add_adapter_set("asr", served_set(args.adapter, encoder=model.backbone))
    model.eval()
    rows = []
    for spec in args.data:
        name, source = spec.split("=", 1)
        manifest, split = source.rsplit(":", 1)
        confidence, right = scored_words(model, manifest, split)
        row = {"data": name, "words": int(right.size), "right": f"{100 * right.mean():.1f}%",
               "auc": round(float(roc_auc_score(right, confidence)), 3)}
        for low, high in BANDS:
            band = (confidence >= low) & (confidence < high)
            share = f"{100 * right[band].mean():.0f}% of {band.sum()}" if band.any() else "-"
            row[f"right at {low:g}-{min(high, 1):g}"] = share
        rows.append(row)
    title = f"Word confidence of {Path(args.adapter).name}: ROC AUC for a right word, and how often each band is right"
    table = markdown_table(rows, list(rows[0]))
    write_results(args.name, {"title": title, "rows": rows}, f"{title}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
