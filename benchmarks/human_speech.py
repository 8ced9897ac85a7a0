"""Benchmark: the shipped ASR and verification sets on *real human* recordings, beside the tools
users know: a thin wrapper over the ``human`` evaluation suite (``training/suites``).

The suite (``python -m training.suites.human``, into ``data/human``) holds the Debian asterisk prompt
packages (Allison's ~25 min of US-English prompts with transcripts, at 16 kHz G.722 and at 8 kHz;
eight more real people for speaker trials), the pocketsphinx sdist's LibriVox / CMU clips and the
ALSA announcements. This runs ``elp-evaluate --suite human --baselines`` on the two sets and saves
``benchmarks/results/human_speech.json`` with the table.

    python -m benchmarks.human_speech [--device cuda] [--data data] [--baseline-clips 80]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import DEFAULT_BACKBONE, REPO_ROOT, write_results


def evaluate_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """The ``elp-evaluate`` command line this benchmark stands for."""
    return ["--suite", "human", "--baselines", "--backbone", args.backbone, "--data", str(args.data),
            "--baseline-clips", str(args.baseline_clips), "--device", args.device, "--out", str(out),
            str(args.adapter), str(args.verify_adapter)]


def main(argv: list[str] | None = None) -> int:
    from training.evaluate import main as elp_evaluate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=str(REPO_ROOT / DEFAULT_BACKBONE))
    parser.add_argument("--adapter", type=Path, default=REPO_ROOT / "adapters_store" / "asr-default")
    parser.add_argument("--verify-adapter", type=Path, default=REPO_ROOT / "adapters_store" / "verify-default")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--baseline-clips", type=int, default=80)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not (args.data / "human" / "READY").is_file():
        raise SystemExit(f"{args.data / 'human'} is not built: python -m training.suites.human")
    with tempfile.TemporaryDirectory(prefix="elp-human-") as folder:
        out = Path(folder) / "suites.json"
        elp_evaluate(evaluate_argv(args, out))
        payload = json.loads(out.read_text())
        table = out.with_suffix(".md").read_text()
    write_results("human_speech", payload, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
