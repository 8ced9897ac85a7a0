"""Run every benchmark in sequence, each in its own process, and collect their tables.

    python -m benchmarks.run_all --quick                 # ~15 min on 2 CPU cores
    python -m benchmarks.run_all --quick --device cuda   # the same scripts on a GPU

``--quick`` runs the full set on the embedded Whisper base and the cheaper ones (memory, serving
overhead, throughput at two concurrencies) on the WavLM Base+-shaped random backbone. Without it
every benchmark runs on both backbones with more requests per point. Results land in
``benchmarks/results/*.json``; the tables are also gathered into ``benchmarks/results/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO_ROOT, RESULTS_DIR


def plan(quick: bool, device: str, workdir: Path) -> list[list[str]]:
    common = ["--device", device, "--workdir", str(workdir)] + (["--quick"] if quick else [])
    steps = []
    for backbone in ("whisper-base", "wavlm-base-plus"):
        light = quick and backbone != "whisper-base"
        steps.append(["benchmarks.memory", "--backbone", backbone, *common])
        steps.append(["benchmarks.overhead", "--backbone", backbone, *common,
                      *(["--batch-sizes", "8"] if light else [])])
        steps.append(["benchmarks.throughput", "--backbone", backbone, *common,
                      *(["--concurrency", "1", "16"] if light else [])])
        if not light:
            steps.append(["benchmarks.churn", "--backbone", backbone, *common])
    steps.append(["benchmarks.quality_baselines", "--random-if-missing", "--device", device,
                  "--workdir", str(workdir), *(["--quick"] if quick else [])])
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/elp-benchmarks"),
                        help="scratch folder for backbone copies and stores (reused between runs)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these modules, e.g. benchmarks.churn")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    timings, failures = [], []
    for step in plan(args.quick, args.device, args.workdir):
        if args.only and step[0] not in args.only:
            continue
        print(f"\n=== {' '.join(step)}", flush=True)
        step_started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", *step], cwd=REPO_ROOT)
        timings.append({"step": " ".join(step), "seconds": round(time.perf_counter() - step_started, 1),
                        "exit_code": code})
        if code != 0:
            failures.append(step[0])
    sections = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        if path.name == "run_all.json":
            continue
        document = json.loads(path.read_text())
        sections.append(f"### {path.stem}\n\n{document.get('table', '')}\n")
    (RESULTS_DIR / "summary.md").write_text("\n".join(sections))
    total = round(time.perf_counter() - started, 1)
    (RESULTS_DIR / "run_all.json").write_text(json.dumps({"command": " ".join(sys.argv), "total_seconds": total,
                                                          "steps": timings}, indent=2))
    print(f"\nall benchmarks: {total} s; failures: {failures or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
