"""``elp-evaluate``: test-split metrics of adapter sets, as JSON, with plots.

WER/CER (ASR), EER and minDCF from trial scores (verification), weighted and unweighted accuracy
with a confusion matrix (emotion, intent). Several sets are evaluated in one backbone load.

``--suite near|far|human|all`` instead reports every set on the held-out suites side by side
(``training.suites.evaluate``) as JSON plus a markdown table; ``--baselines`` adds Whisper base,
pocketsphinx and resemblyzer on the same clips:

    elp-evaluate --suite all --baselines adapters_store/*-default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from elp import AdapterSet, MultiAdapterModel, load_backbone
from elp.backbones import Backbone
from elp.tasks import get_task
from training.data.manifest import filter_split, read_manifest, read_trials
from training.evaluation import evaluate_set, public
from training.metrics import PAIRED_UNITS, paired_metric
from training.plots import plot_confusion_matrix, plot_det_curve
from training.suites.baselines import ASR_BASELINES, SPEAKER_BASELINES

ALL_BASELINES = (*ASR_BASELINES, *SPEAKER_BASELINES)


def evaluate_adapter(
    model: MultiAdapterModel, key: str, corpus: Path, split: str, out_dir: Path | None, max_clips: int = 0
) -> dict:
    task = model.adapter_sets[key].config.task
    rows = filter_split(read_manifest(corpus / f"{task}.jsonl"), split)
    if max_clips:
        rows = rows[:max_clips]
    trials_path = corpus / f"{task}_trials_{split}.txt"
    trials = read_trials(trials_path) if get_task(task).evaluation == "trials" and trials_path.exists() else None
    if trials and max_clips:
        trials = trials[:: max(1, len(trials) // (4 * max_clips))]  # both kinds, evenly spread
    metrics = evaluate_set(model, key, rows, trials)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if "_scores" in metrics:  # scored trials
            plot_det_curve(metrics["_scores"], metrics["_labels"], out_dir / f"{key}-det.png", name=key)
        elif "_confusion" in metrics:  # classes
            plot_confusion_matrix(np.array(metrics["_confusion"]), metrics["_labels"], out_dir / f"{key}-confusion.png")
    clip_errors = {"_clip_errors": metrics["_clip_errors"]} if "_clip_errors" in metrics else {}
    return {"adapter": key, "task": task, "split": split, **public(metrics), **clip_errors}


def paired_with_first(results: list[dict]) -> None:
    """Each later set's figures against the first set of its task on the same clips, with a 95% paired-bootstrap
    interval (``training.metrics.paired_bootstrap``), as ``vs_first`` in its result; the per-clip counts go."""
    firsts: dict[str, dict] = {}
    for result in results:
        errors = result.pop("_clip_errors", None)
        first = firsts.setdefault(result["task"], {"adapter": result["adapter"], "errors": errors})
        if first["adapter"] == result["adapter"] or not errors or first["errors"]["ids"] != errors["ids"]:
            continue
        result["vs_first"] = {"against": first["adapter"]}
        for unit in PAIRED_UNITS:
            if unit in errors:
                metric, d = paired_metric(first["errors"][unit], errors[unit], unit)
                result["vs_first"][metric.lower()] = {"difference": d.difference, "low": d.low, "high": d.high,
                                                      "share_better": d.better}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elp-evaluate", description=__doc__.splitlines()[0])
    p.add_argument("adapters", nargs="+", help="adapter-set folders")
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--out", default="results/evaluation.json")
    p.add_argument("--plots", default="results/plots")
    p.add_argument("--max-clips", type=int, default=0, help="evaluate on the first N clips only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "int8", "auto"],
                   help="the encoder as served: int8 / auto quantise it on CPUs (the server's ELP_DTYPE)")
    add_rescoring_options(p)
    suites = p.add_argument_group("held-out suites (training.suites)")
    suites.add_argument("--suite", choices=["near", "far", "human", "all"], action="append",
                        help="report near / far / human side by side (repeatable; 'all' = every suite)")
    suites.add_argument("--data", default="data", help="folder holding far/, human/ and phrasings/")
    suites.add_argument("--baselines", nargs="*", default=None, choices=ALL_BASELINES,
                        help="add these baselines (no names: all four) on capped subsets of the same clips")
    suites.add_argument("--baseline-clips", type=int, default=80, help="ASR clips per data set for the baselines")
    suites.add_argument("--baseline-trials", type=int, default=1000, help="trials per data set for the baselines")
    suites.add_argument("--markdown", default=None, help="also write the table here (default: --out with .md)")
    return p


def add_rescoring_options(parser: argparse.ArgumentParser) -> None:
    """``--asr-rescoring``, ``--rescoring-dtype``: an ASR set's second pass as the server runs it (``served_set``)."""
    parser.add_argument("--asr-rescoring", nargs="?", const="true", default="auto", choices=["auto", "true", "false"],
                        help="an ASR set's second pass where it has one, as the server's ELP_ASR_RESCORING (auto: "
                        "where this CPU runs its decoder in bfloat16 natively, or else in float32 beside the encoder "
                        "precision measured to fit on this x86 class: elp.decoding.rescoring.FLOAT32_PASS_FITS); a "
                        "bare --asr-rescoring is true")
    parser.add_argument("--rescoring-dtype", default=None, choices=["float32", "float32-exact", "bfloat16"],
                        help="the second pass' precision (default: bfloat16 where this CPU computes it natively); "
                        "float32-exact: float32 with the whole vocabulary projection in float32, the reference the "
                        "served float32 pass (its normalisers mostly from int8) is checked against")


def served_set_from_args(folder: str | Path, args: argparse.Namespace, encoder: Backbone) -> AdapterSet:
    """``served_set`` under a tool's ``add_rescoring_options``, beside ``encoder``."""
    return served_set(folder, args.asr_rescoring, args.rescoring_dtype, encoder)


def served_set(folder: str | Path, asr_rescoring: bool | str = False, rescoring_dtype: str | None = None,
               encoder: Backbone | None = None) -> AdapterSet:
    """The set as the server prepares it (``TaskSpec.prepare_for_serving`` with the default settings but
    ``asr_rescoring`` / ``rescoring_dtype``, beside ``encoder``, its device and precision: a decoder set times its
    words), so the figures and compute times are the served path's. Without ``encoder``: a CPU one of unknown
    precision (``auto`` then runs a second pass only in native bfloat16)."""
    adapter_set = AdapterSet.load(folder)
    carries_second_pass = adapter_set.config.rescoring is not None
    options = {"asr_rescoring": asr_rescoring, "rescoring_dtype": rescoring_dtype,
               **(encoder.serving_options() if encoder is not None else {"encoder_device": "cpu"})}
    adapter_set = adapter_set.task_spec.prepare_for_serving(adapter_set, options)
    if carries_second_pass:  # which ran depends on the setting and this CPU: say so beside the figures
        ran = adapter_set.rescorer_dtype if adapter_set.config.rescoring is not None else "off"
        print(f"{Path(folder).name}: second pass {ran} (--asr-rescoring {asr_rescoring})", file=sys.stderr)
    return adapter_set


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quantization = None if args.dtype == "float32" else args.dtype
    model = MultiAdapterModel(load_backbone(args.backbone, device=args.device, quantization=quantization))
    if args.suite:
        return run_suites(model, args, argv)
    results = []
    for folder in args.adapters:
        key = Path(folder).name
        model.add_adapter_set(key, served_set_from_args(folder, args, model.backbone))
        result = evaluate_adapter(model, key, Path(args.corpus), args.split, Path(args.plots), args.max_clips)
        print(json.dumps({k: v for k, v in result.items() if k != "_clip_errors"}), flush=True)
        results.append(result)
    paired_with_first(results)
    for result in results:
        if "vs_first" in result:
            print(json.dumps({"adapter": result["adapter"], "vs_first": result["vs_first"]}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def run_suites(model: MultiAdapterModel, args: argparse.Namespace, argv: list[str] | None) -> int:
    """Every set on the chosen suites; JSON (records) and a markdown table next to it."""
    import shlex
    import sys

    from training.suites.evaluate import SUITES, Options, evaluate_on_suites
    from training.suites.report import markdown

    data = Path(args.data)
    baselines = None if args.baselines is None else (args.baselines or list(ALL_BASELINES))
    options = Options(folders={"corpus": Path(args.corpus), "far": data / "far", "human": data / "human",
                               "phrasings": data / "phrasings"},
                      suites=SUITES if "all" in args.suite else tuple(args.suite), baselines=baselines or [],
                      whisper_dir=args.backbone, device=args.device, baseline_clips=args.baseline_clips,
                      baseline_trials=args.baseline_trials, max_clips=args.max_clips)
    command = "elp-evaluate " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for folder in args.adapters:
        key = Path(folder).name
        model.add_adapter_set(key, served_set_from_args(folder, args, model.backbone))
        records += evaluate_on_suites(model, key, options)
        out.write_text(json.dumps({"command": command, "records": records}, indent=1))  # after each set
    table = markdown(records, command)
    Path(args.markdown or out.with_suffix(".md")).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
