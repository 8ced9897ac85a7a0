"""``elp-train``'s flags, in one place (``training.train`` re-exports :func:`build_parser`)."""

from __future__ import annotations

import argparse

import torch

from elp.tasks import set_task_names

#: (head, L-adapters/weighted sum, E-adapters) learning-rate presets; each task's values are in its
#: training recipe (elp.tasks): "paper" = ELP.md's for long schedules, "fast" = this recipe's short ones
LR_PRESETS = ("fast", "paper")
DESCRIPTION = "train one adapter set (or a baseline) for one task and write it to the store"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elp-train", description=DESCRIPTION)
    p.add_argument("--task", required=True, choices=set_task_names())
    p.add_argument("--backbone", default="models/whisper-base", help="local folder or hub id")
    p.add_argument("--corpus", default="data/corpus", help="folder with <task>.jsonl manifests")
    p.add_argument("--method", default="elp", help="elp, el, ep, lp, e, l, p, none or full")
    p.add_argument("--out", help="adapter-set folder to write (e.g. adapters_store/asr-default)")
    p.add_argument("--run-dir", default=None, help="checkpoints, history and plots (default runs/<task>-<method>)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = epochs decide)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="wall-clock budget (0 = none)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr-preset", choices=sorted(LR_PRESETS), default="fast")
    p.add_argument("--lr-head", type=float)
    p.add_argument("--lr-l", type=float)
    p.add_argument("--lr-e", type=float)
    p.add_argument("--lr-p", type=float, help="default: the L rate")
    p.add_argument("--lr-backbone", type=float, default=5e-5, help="full fine-tuning only")
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps with linear warm-up")
    p.add_argument("--prompt-frames", type=int, default=8)
    p.add_argument("--prompt-position", choices=["prefix", "suffix"], default="prefix")
    p.add_argument("--prompt-form", choices=["linear", "nonlinear"], default="nonlinear")
    p.add_argument("--pooling", choices=["mean", "stats", "max"], default="mean",
                   help="pooled heads: mean, stats (mean + std) or max over frames")
    p.add_argument("--factorized-slots", action="store_true",
                   help="intent head scores action / object / location and sums them per intent")
    p.add_argument("--prosody", action="store_true",
                   help="pooled heads also read pitch/loudness/tilt statistics of the clip (elp.heads.prosody)")
    p.add_argument("--eval-every", type=int, default=200, help="steps between validations")
    p.add_argument("--patience", type=int, default=6, help="validations without improvement before stopping")
    p.add_argument("--keep-validated", action="store_true",
                   help="also save the set at every validation (run_dir/step-NNNNNN), e.g. to average checkpoints")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--telephone-prob", type=float, default=0.0,
                   help="share of training clips heard through a G.711 telephone line (300-3400 Hz, 8 kHz, mu-law)")
    p.add_argument("--init-from", help="start from this adapter set (same backbone) instead of a fresh one")
    p.add_argument("--train-only", default="", help="comma list of e,l,p,head to train; the rest stay frozen")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--extra-corpus", action="append", default=[], metavar="DIR",
                   help="another corpus folder (same schema) whose train and valid rows of the task join the run; "
                        "repeatable; its test rows are never read. Validation then reads every valid row")
    p.add_argument("--extra-repeat", type=int, default=1, metavar="N",
                   help="list each extra corpus' training clip N times an epoch (to weigh a small corpus of real "
                        "voices against a large synthetic one); each copy gets its own id (<id>-r<k>)")
    p.add_argument("--max-train-clips", type=int, default=0)
    p.add_argument("--max-eval-clips", type=int, default=0)
    p.add_argument("--test", action="store_true", help="also evaluate the best set on the test split")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--results-json", help="append this run's result as one JSON line")
    p.add_argument("--quiet", action="store_true")
    return p
