"""Where a set's errors are: its test metric per recording condition of the generated corpus.

Groups clips by what the corpus recorded when it made them (``meta``: synthesiser, noise type,
SNR, reverberation) and by whether the speaker was seen in training, so a recipe change can aim
at the condition that costs most (ASR: CER per group; emotion and intent: accuracy per group).

    python -m training.breakdown adapters_store/asr-default --corpus data/corpus --split test
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from elp import MultiAdapterModel, load_backbone
from elp.tasks import get_task
from training.data.manifest import filter_split, read_manifest
from training.evaluate import add_rescoring_options, served_set_from_args
from training.evaluation import predict_rows
from training.metrics import cer, weighted_accuracy

LOW_SNR_DB = 12.0


def condition_groups(meta: dict, speaker: str) -> list[str]:
    """Every group a clip belongs to (``all`` included)."""
    snr = meta.get("snr_db")
    return [
        "all",
        "speaker=seen" if speaker.startswith("spk-train") else "speaker=unseen",
        f"synth={meta.get('synth', '?')}",
        f"noise={meta.get('noise', '?')}",
        f"snr<{LOW_SNR_DB:g}dB" if snr is not None and snr < LOW_SNR_DB else f"snr>={LOW_SNR_DB:g}dB or clean",
        f"reverb={bool(meta.get('reverb'))}",
    ]


def breakdown(model: MultiAdapterModel, key: str, corpus: Path, split: str) -> dict[str, dict[str, float]]:
    task = model.adapter_sets[key].config.task
    field = get_task(task).target_field  # text (scored by CER) or label (by accuracy)
    if field not in ("text", "label"):
        raise ValueError(f"{task} is not scored clip by clip against a text or label: use elp-evaluate")
    rows = filter_split(read_manifest(corpus / f"{task}.jsonl"), split)
    predictions, _ = predict_rows(model, key, rows)
    truth: dict[str, list[str]] = defaultdict(list)
    guess: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        answer = predictions[row.id]
        for group in condition_groups(row.meta, row.speaker):
            truth[group].append(getattr(row, field) or "")
            guess[group].append(getattr(answer, field) or "")
    metric, name = (cer, "cer") if field == "text" else (weighted_accuracy, "accuracy")
    return {group: {"clips": len(truth[group]), name: round(metric(truth[group], guess[group]), 4)}
            for group in sorted(truth)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.breakdown", description=__doc__.splitlines()[0])
    p.add_argument("adapter", help="adapter-set folder")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_rescoring_options(p)
    args = p.parse_args(argv)
    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device))
    model.add_adapter_set("set", served_set_from_args(args.adapter, args, model.backbone))
    table = breakdown(model, "set", Path(args.corpus), args.split)
    for group, values in table.items():
        print(json.dumps({"group": group, **values}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
