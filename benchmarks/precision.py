"""Benchmark: what a reduced-precision backbone (``ELP_DTYPE``) costs in quality and buys in time.

For each dtype (float32, bfloat16; float16 too on a GPU) the embedded backbone is loaded in that
dtype with the shipped adapter sets, and each set is evaluated on the first ``--clips`` clips of
its task's test split (``training.evaluate.evaluate_adapter``: CER/WER, EER, accuracy), timing the
model's compute. ``speedup`` = float32 seconds / this dtype's seconds for the same clips, measured
in the same run. Reduced precision is worth turning on where the hardware has it (CPUs with
AVX512-BF16 or AMX, GPUs); without it bf16 matmuls are emulated and slower.

    python -m benchmarks.precision [--clips 120] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import CORPUS_DIR, DEFAULT_BACKBONE, DEFAULT_IDS, REPO_ROOT, markdown_table, write_results

DTYPES = ("float32", "bfloat16", "float16")  # torch.<name>, as ELP_DTYPE names them


def evaluate_dtype(dtype: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from training.evaluate import evaluate_adapter
    from training.evaluation import headline

    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device, dtype=getattr(torch, dtype)))
    rows = []
    for name in DEFAULT_IDS.values():
        model.add_adapter_set(name, AdapterSet.load(Path(args.store) / name, device=args.device))
        result = evaluate_adapter(model, name, Path(args.corpus), "test", None, max_clips=args.clips)
        metric, value, _ = headline(result["task"], result)
        rows.append({"dtype": dtype, "set": name, "metric": metric, "value": round(value, 4),
                     "compute_s": round(result["compute_seconds"], 2)})
        print(f"  {dtype:9s} {name:16s} {metric} {rows[-1]['value']} in {rows[-1]['compute_s']} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE))
    parser.add_argument("--store", default=str(REPO_ROOT / "adapters_store"))
    parser.add_argument("--corpus", default=str(CORPUS_DIR))
    parser.add_argument("--clips", type=int, default=120, help="first N test clips per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=None,
                        help="default: float32 bfloat16 (and float16 on a GPU)")
    args = parser.parse_args(argv)
    dtypes = args.dtypes or ["float32", "bfloat16"] + (["float16"] if args.device.startswith("cuda") else [])
    if "float32" not in dtypes:
        dtypes = ["float32", *dtypes]  # the baseline of every ratio
    torch.manual_seed(0)
    rows = [row for dtype in dtypes for row in evaluate_dtype(dtype, args)]
    reference = {row["set"]: row for row in rows if row["dtype"] == "float32"}
    for row in rows:
        base = reference[row["set"]]
        row["delta"] = round(row["value"] - base["value"], 4)
        row["speedup"] = round(base["compute_s"] / row["compute_s"], 2) if row["compute_s"] else None
    title = (f"precision, backbone {Path(args.backbone).name}, device {args.device}, first {args.clips} test "
             f"clips per task (verification: trials among them)")
    columns = ["dtype", "set", "metric", "value", "delta", "compute_s", "speedup"]
    write_results(f"precision-{args.device.split(':')[0]}", {"title": title, "rows": rows},
                  f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
