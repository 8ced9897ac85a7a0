"""``python -m training.compare``: the paper's comparison at small scale, as one command.

For each task it trains full fine-tuning, ELP, E only, L only, P only and the frozen weighted-sum
baseline with the same step budget, evaluates each on the test split, and writes
``results/comparison.json`` and ``results/comparison.md``. ``--random-backbone`` adds ELP on the same
architecture with random frozen weights (does pretraining matter?). ``--store`` copies the ELP sets
into the adapter store as the task defaults. Tasks can run as parallel processes on one GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from elp.tasks import get_task, set_task_names
from training.train import build_parser, train

# ELP first: it becomes the stored default set, so it must finish even if the budget runs out.
METHODS = ("elp", "full", "e", "l", "p", "none")
TASKS = set_task_names()


def table_metrics(task: str) -> tuple[str, str]:
    """The two figures of a task's comparison row: its headline metric, then the first other it reports."""
    spec = get_task(task)
    return spec.headline_metric, next(m for m in spec.metrics if m != spec.headline_metric)


def randomized_backbone(source: str, out_dir: Path, seed: int = 0) -> str:
    """Same architecture and config as ``source``, random weights: the "no pretraining" control."""
    from transformers import AutoConfig, AutoModel, WhisperModel

    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    model = WhisperModel(config) if config.model_type == "whisper" else AutoModel.from_config(config)
    model.save_pretrained(out_dir)
    return str(out_dir)


def run_task(args: argparse.Namespace, task: str) -> list[dict]:
    results = []
    deadline = args.deadline or float("inf")
    backbones = [("pretrained", args.backbone)]
    if args.random_backbone:
        backbones.append(("random", randomized_backbone(args.backbone, Path(args.out_dir) / "random-backbone")))
    for backbone_name, backbone in backbones:
        methods = args.methods if backbone_name == "pretrained" else ["elp"]
        for method in methods:
            write_default = args.store and method == "elp" and backbone_name == "pretrained"
            minutes = args.minutes * (args.default_step_factor if write_default else 1)
            remaining = (deadline - time.time()) / 60 - 0.5  # keep time for the final evaluation
            if remaining < 0.2:
                print(json.dumps({"task": task, "method": method, "skipped": "deadline"}), flush=True)
                continue
            argv = [
                "--task", task, "--backbone", backbone, "--corpus", args.corpus, "--method", method,
                "--run-dir", f"{args.out_dir}/runs/{backbone_name}-{task}-{method}",
                "--max-steps", str(args.steps * (args.default_step_factor if write_default else 1)),
                "--max-minutes", str(min(minutes, remaining)),
                "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every),
                "--num-workers", str(args.num_workers), "--device", args.device, "--test", "--quiet",
                "--seed", str(args.seed),
            ]
            if args.amp:
                argv.append("--amp")
            if write_default:
                argv += ["--out", f"{args.store}/{get_task(task).default_adapter}"]
            result = train(build_parser().parse_args(argv)).__dict__
            result["backbone"] = backbone_name
            results.append(result)
            with open(Path(args.out_dir) / f"comparison-{task}.jsonl", "a") as fh:
                fh.write(json.dumps(result) + "\n")
            print(json.dumps({k: result[k] for k in ("task", "method", "backbone", "test", "steps", "seconds")}),
                  flush=True)
    return results


def render_table(results: list[dict]) -> str:
    lines = ["| task | method | backbone | trained params | test metric | value | second metric | value | steps |",
             "|---|---|---|---:|---|---:|---|---:|---:|"]
    for r in results:
        first, second = table_metrics(r["task"])
        test = r.get("test") or {}
        pct = lambda v: f"{100 * v:.2f}%" if isinstance(v, float) else "-"  # noqa: E731
        lines.append(f"| {r['task']} | {r['method']} | {r['backbone']} | {r['trained_parameters']:,} | {first} | "
                     f"{pct(test.get(first))} | {second} | {pct(test.get(second))} | {r['steps']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="models/whisper-base")
    p.add_argument("--corpus", default="data/corpus")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--steps", type=int, default=600, help="step budget per run")
    p.add_argument("--minutes", type=float, default=2.0, help="wall-clock budget per run")
    p.add_argument("--default-step-factor", type=int, default=2, help="budget multiplier for the stored ELP sets")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--num-workers", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-backbone", action="store_true")
    p.add_argument("--store", help="write the ELP sets here as <task>-default")
    p.add_argument("--out-dir", default="results")
    p.add_argument("--parallel", action="store_true", help="one process per task (share one GPU)")
    p.add_argument("--deadline", type=float, default=0.0, help="unix time after which no new run starts")
    p.add_argument("--budget-minutes", type=float, default=0.0, help="sets --deadline from now")
    p.add_argument("--table-only", action="store_true", help="re-render the table from existing JSONL files")
    args = p.parse_args(argv)
    if args.budget_minutes and not args.deadline:
        args.deadline = time.time() + 60 * args.budget_minutes
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if not args.table_only:
        if args.parallel and len(args.tasks) > 1:
            base = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--parallel"]
            base += ["--deadline", str(args.deadline)] if args.deadline else []
            children = []
            for task in args.tasks:
                child_argv = [*base, "--tasks", task]
                log = open(out / f"compare-{task}.log", "w")  # noqa: SIM115 (kept open for the child)
                children.append(subprocess.Popen([sys.executable, "-m", "training.compare", *child_argv],
                                                 stdout=log, stderr=subprocess.STDOUT))
            codes = [c.wait() for c in children]
            if any(codes):
                print(f"task processes exited with {codes}; see {out}/compare-<task>.log", file=sys.stderr)
        else:
            for task in args.tasks:
                (out / f"comparison-{task}.jsonl").unlink(missing_ok=True)
                run_task(args, task)

    results = []
    for task in TASKS:
        path = out / f"comparison-{task}.jsonl"
        if path.exists():
            results += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    (out / "comparison.json").write_text(json.dumps(results, indent=1))
    table = render_table(results)
    (out / "comparison.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
