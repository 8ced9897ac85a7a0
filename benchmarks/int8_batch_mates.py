"""How much an int8 answer moves with its batch-mates: the same clip alone and in a mixed batch.

The shipped sets, each of the first ``--clips`` near test clips of one task run once in a mixed batch
of four rows (one per set, in turn) and once alone; per set, the largest absolute difference of its
head output (CTC log-probabilities, the speaker embedding, class logits). Three designs side by side:
float32 (the bound: batch shapes change float rounding only), int8 encoded row by row
(``MultiAdapterModel.encode``, the served design) and int8 encoded as a batch, one activation scale
per call (the first design). Near test clips only: nothing is chosen here.

    python -m benchmarks.int8_batch_mates [--clips 24]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

import torch

from benchmarks.common import CORPUS_DIR, DEFAULT_BACKBONE, REPO_ROOT, markdown_table, write_results

SETS = ("asr-default", "verify-default", "emotion-default", "intent-default")


def largest_differences(model, waves: list[torch.Tensor]) -> dict[str, float]:
    from elp.testing import outputs_per_row

    worst = dict.fromkeys(SETS, 0.0)
    for start in range(0, len(waves) - len(SETS) + 1, len(SETS)):
        group = waves[start:start + len(SETS)]
        mixed = outputs_per_row(model, group, list(SETS))
        for row, name in enumerate(SETS):
            alone = outputs_per_row(model, [group[row]], [name])[0]
            worst[name] = max(worst[name], float((mixed[row].float() - alone.float()).abs().max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE))
    parser.add_argument("--store", default=str(REPO_ROOT / "adapters_store"))
    parser.add_argument("--corpus", default=str(CORPUS_DIR))
    parser.add_argument("--task", default="emotion", help="whose near test clips are used")
    parser.add_argument("--clips", type=int, default=24)
    args = parser.parse_args(argv)

    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from training.int8_calibration import manifest_waveforms

    waves = manifest_waveforms(Path(args.corpus) / f"{args.task}.jsonl", "test", args.clips, 16000)
    rows = []
    for design, quantization, row_by_row in (("float32", None, True), ("int8, row by row", "int8", True),
                                             ("int8, batched (one scale per call)", "int8", False)):
        model = MultiAdapterModel(load_backbone(args.backbone, quantization=quantization)).eval()
        for name in SETS:
            model.add_adapter_set(name, AdapterSet.load(Path(args.store) / name))
        batched = mock.patch.object(model, "encode", model._encode_batch)
        with contextlib.nullcontext() if row_by_row else batched:
            worst = largest_differences(model, waves)
        rows.append({"design": design, **{name: f"{value:.2g}" for name, value in worst.items()}})
        print(rows[-1], flush=True)
    table = markdown_table(rows, ["design", *SETS])
    write_results("int8-batch-mates", {"clips": len(waves), "task_clips": args.task, "rows": rows}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
