"""Benchmark: what a reduced-precision backbone (``ELP_DTYPE``) costs in quality and buys in time.

For each dtype (float32, bfloat16, int8 on a CPU; float16 too on a GPU) the embedded backbone is
loaded once, with the shipped adapter sets, and each set is evaluated on the first ``--clips`` clips
of its task's test split (``training.evaluate.evaluate_adapter``: CER/WER, EER, accuracy), timing
the model's compute. Runs are **interleaved**: for every set and repeat the dtypes take turns in a
rotating order, so a noisy neighbour slows all of them alike; ``compute_s`` is the median over
``--repeats`` and ``spread`` its max-min. ``speedup`` = float32's median / this dtype's median for
the same clips in the same run. ``--corpus`` takes any folder in the corpus schema, so the same
command measures the near split (``data/corpus``) and the far and human suites (``data/far``,
``data/human``).

Reduced precision is worth turning on where the hardware has it: bf16 on CPUs with AVX512-BF16 or
AMX and on GPUs (elsewhere it is emulated and slower); int8 encoder weights (dynamic int8 Linear
layers, ``elp/backbones/quantize.py``) on any x86 CPU. ``int8-plain`` is the first int8 scheme
(no smoothing, 7-bit activations), kept to compare against. The machine's load average is noted
in the title (before and after).

    python -m benchmarks.precision [--clips 120] [--repeats 3] [--dtypes float32 int8 int8-plain] [--device cuda]
    python -m benchmarks.precision --encoder-speed --clips 48 --repeats 5 --dtypes float32 int8 int8-plain
    python -m benchmarks.precision --encoder-speed --backbone wavlm-base-plus --random-sets \
        --dtypes float32 int8-linears int8 --tag wavlm

``--backbone wavlm-base-plus`` is WavLM Base+-shaped random weights (``benchmarks.common.prepare_backbone``)
and ``--random-sets`` random adapter sets for it: speed only. ``int8-linears`` is ``int8`` as it was
before WavLM's attention projections and the wav2vec 2.0-family CNN ran in int8 (only the Linears the
library calls as modules; for Whisper the same as ``int8``), kept to compare against.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    BACKBONE_CHOICES,
    CORPUS_DIR,
    DEFAULT_BACKBONE,
    DEFAULT_IDS,
    REPO_ROOT,
    build_random_store,
    default_sets,
    markdown_table,
    prepare_backbone,
    workdir_for,
    write_results,
)

#: as ELP_DTYPE names them, plus "int8-plain" (the first int8 scheme: no smoothing, 7-bit activations)
#: and "int8-linears" (int8 without WavLM's attention projections and the wav2vec 2.0-family CNN)
DTYPES = ("float32", "bfloat16", "float16", "int8", "int8-plain", "int8-linears")


def load_model(dtype: str, args: argparse.Namespace):
    """The backbone in ``dtype`` (int8 = float32 activations, int8 encoder weights) with every set."""
    from elp import AdapterSet, MultiAdapterModel, load_backbone
    from elp.backbones.calibration import Int8Calibration, find_calibration
    from elp.backbones.quantize import quantize_backbone

    quantized = dtype.startswith("int8")
    torch_dtype = torch.float32 if quantized else getattr(torch, dtype)
    backbone = load_backbone(args.backbone, device=args.device, dtype=torch_dtype,
                             quantization=dtype if quantized and dtype != "int8-linears" else None)
    if dtype == "int8-linears":  # this backbone instance only: no attention rewrite, no int8 CNN
        backbone.prepare_for_int8 = lambda: None
        backbone.int8_front_end_convs = dict
        path = find_calibration(backbone, args.backbone)
        quantize_backbone(backbone, "int8", Int8Calibration.load(path, backbone) if path else None)
    model = MultiAdapterModel(backbone).eval()
    for name in args.sets:
        model.add_adapter_set(name, AdapterSet.load(Path(args.store) / name, device=args.device))
    return model


def measure(models: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every set on every dtype, ``args.repeats`` times, the dtypes' order rotating each repeat."""
    from training.evaluate import evaluate_adapter
    from training.evaluation import headline

    order = list(models)
    rows = []
    for name in args.sets:
        task = next(iter(models.values())).adapter_sets[name].config.task
        if not (Path(args.corpus) / f"{task}.jsonl").exists():
            print(f"  {name}: no {task}.jsonl in {args.corpus}, skipped", flush=True)
            continue
        runs: dict[str, list[tuple[float, float]]] = {dtype: [] for dtype in order}
        metric = ""
        for repeat in range(args.repeats):
            for dtype in order[repeat % len(order):] + order[: repeat % len(order)]:
                result = evaluate_adapter(models[dtype], name, Path(args.corpus), "test", None, max_clips=args.clips)
                metric, value, _ = headline(result["task"], result)
                runs[dtype].append((value, result["compute_seconds"]))
                print(f"  {dtype:9s} {name:16s} {metric} {value:.4f} in {result['compute_seconds']:.2f} s", flush=True)
        for dtype, values in runs.items():
            seconds = [s for _, s in values]
            rows.append({"dtype": dtype, "set": name, "metric": metric,
                         "value": round(statistics.median(v for v, _ in values), 4),
                         "compute_s": round(statistics.median(seconds), 2),
                         "spread_s": round(max(seconds) - min(seconds), 2)})
    return rows


def encoder_speed(models: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds to encode the first ``args.clips`` test clips of the ASR split (batches of 8 of
    similar length, the first set routed), dtypes interleaved batch by batch: the backbone's speed
    without the decoding and heads that ``measure`` also times."""
    from elp.model import pad_waveforms
    from training.int8_calibration import manifest_waveforms

    waves = sorted(manifest_waveforms(Path(args.corpus) / "asr.jsonl", "test", args.clips, 16000), key=len)
    batches = [pad_waveforms(waves[start:start + 8]) for start in range(0, len(waves), 8)]
    order, key = list(models), args.sets[0]
    seconds: dict[str, list[float]] = {dtype: [] for dtype in order}
    with torch.no_grad():
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            totals = dict.fromkeys(order, 0.0)
            # the dtypes take turns batch by batch (a rotating order): a noisy neighbour's burst on a
            # shared machine lands on all of them rather than on one dtype's whole pass
            for index, (batch, lengths) in enumerate(batches):
                turn = (repeat + index) % len(order)
                for dtype in order[turn:] + order[:turn]:
                    started = time.perf_counter()
                    models[dtype].encode(batch, lengths, [key] * len(lengths))
                    totals[dtype] += time.perf_counter() - started
            if repeat:
                for dtype, total in totals.items():
                    seconds[dtype].append(total)
                print("  " + ", ".join(f"{dtype} {total:.2f} s" for dtype, total in totals.items()), flush=True)
    return [{"dtype": dtype, "set": key, "metric": "encode_s", "value": round(statistics.median(values), 2),
             "compute_s": round(statistics.median(values), 2), "spread_s": round(max(values) - min(values), 2)}
            for dtype, values in seconds.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE),
                        help=f"a backbone folder or {' / '.join(BACKBONE_CHOICES)} (random weights, base-sized)")
    parser.add_argument("--store", default=str(REPO_ROOT / "adapters_store"))
    parser.add_argument("--random-sets", action="store_true",
                        help="random adapter sets for the backbone instead of --store's (speed only)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_IDS.values()))
    parser.add_argument("--corpus", default=str(CORPUS_DIR), help="any folder in the corpus schema")
    parser.add_argument("--clips", type=int, default=120, help="first N test clips per task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=None,
                        help="default: float32 bfloat16 int8 on a CPU, float32 bfloat16 float16 on a GPU")
    parser.add_argument("--encoder-speed", action="store_true",
                        help="time only the encoder (first --sets set routed) on the first --clips ASR test clips")
    parser.add_argument("--tag", default="", help="suffix of the results file name (e.g. the suite)")
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    dtypes = args.dtypes or ["float32", "bfloat16"] + (["float16"] if on_gpu else ["int8"])
    if "float32" not in dtypes:
        dtypes = ["float32", *dtypes]  # the baseline of every ratio
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    if args.encoder_speed:
        args.sets = args.sets[:1]
    with workdir_for(args, "precision") as workdir:
        args.backbone = str(prepare_backbone(args.backbone, workdir))
        if args.random_sets:
            sets = {adapter_id: task for adapter_id, task in default_sets().items() if adapter_id in args.sets}
            args.store = str(build_random_store(Path(args.backbone), workdir / "store", sets))
        models = {dtype: load_model(dtype, args) for dtype in dtypes}
        rows = encoder_speed(models, args) if args.encoder_speed else measure(models, args)
    reference = {row["set"]: row for row in rows if row["dtype"] == "float32"}
    for row in rows:
        base = reference[row["set"]]
        row["delta"] = round(row["value"] - base["value"], 4)
        row["speedup"] = round(base["compute_s"] / row["compute_s"], 2) if row["compute_s"] else None
    title = (f"precision, backbone {Path(args.backbone).name}, device {args.device}, corpus {Path(args.corpus).name}, "
             f"first {args.clips} test clips per task (verification: trials among them), "
             f"{args.repeats} interleaved repeats (median compute, spread = max - min), "
             f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    columns = ["dtype", "set", "metric", "value", "delta", "compute_s", "spread_s", "speedup"]
    suffix = ("-encoder" if args.encoder_speed else "") + (f"-{args.tag}" if args.tag else "")
    write_results(f"precision-{args.device.split(':')[0]}{suffix}", {"title": title, "rows": rows},
                  f"{title}\n\n" + markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
