#!/usr/bin/env bash
# Runs on a lent GPU machine (no network), in one call: retrain the four default adapter sets with
# the per-task recipe below (two variants where one choice is open; the better on *validation*
# comes back), then the throughput benchmark on the GPU for both backbones.
# Bundle first, here:  python -m training.device_bundle pack --out .device --splits train,valid --serve
# Usage: scripts/device_defaults.sh MINUTES_PER_RUN [BENCH_SECONDS]
# Smoke test on a CPU (no wheels, no benchmarks, a copy of the bundle):
#   BUNDLE=/tmp/bundle SKIP_WHEELS=1 EXTRA="--max-train-clips 32 --max-eval-clips 16" \
#     scripts/device_defaults.sh 0.2 0
set -uo pipefail
shopt -s nullglob
minutes=${1:-5}; bench_seconds=${2:-150}
out=${OUT:-/tmp/out}; bundle=${BUNDLE:-.device}; mkdir -p "$out" store runs
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# shellcheck source=scripts/device_lib.sh
. "$(dirname "$0")/device_lib.sh"
prepare_bundle "$bundle" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"

common=(--backbone "$bundle/whisper-base" --corpus "$bundle/corpus" --method elp --amp --batch-size 32
        --max-minutes "$minutes" --max-steps 20000 --weight-decay 0.01 --num-workers 2 --quiet
        --results-json runs/results.jsonl ${EXTRA:-})  # EXTRA: e.g. a smoke test's --max-train-clips
declare -A variants=(
  [asr]="--task asr --eval-every 400 --patience 100"
  [verification-fast]="--task verification --eval-every 200 --patience 8"
  [verification-paper]="--task verification --eval-every 200 --patience 8 --lr-preset paper"
  [emotion-fast]="--task emotion --pooling stats --eval-every 150 --patience 10"
  [emotion-paper]="--task emotion --pooling stats --eval-every 150 --patience 10 --lr-preset paper"
  [intent]="--task intent --pooling max --factorized-slots --eval-every 150 --patience 10"
)
train_variants
tail -n 3 runs/*.log
# The better variant per task on validation (never on test: test is scored at home, lossless).
python3 - "$out" <<'EOF'
import json, sys, tarfile
from training.evaluation import headline
rows = [json.loads(line) for line in open("runs/results.jsonl")]
best = {}
for row in rows:
    name = row["output"].split("/")[-1]
    key, value, higher = headline(row["task"], row["valid"])
    score = value if higher else -value
    print(name, row["steps"], "steps", key, value)
    if row["task"] not in best or score > best[row["task"]][0]:
        best[row["task"]] = (score, name)
for task, (_, name) in best.items():
    with tarfile.open(f"{sys.argv[1]}/{task}.tgz", "w:gz") as archive:
        archive.add(f"store/{name}", arcname=name)
        for extra in ("history.json", "training_curves.png", "confusion_matrix.png", "det_curve.png"):
            try:
                archive.add(f"runs/{name}/{extra}", arcname=f"{name}-run/{extra}")
            except FileNotFoundError:
                pass
print(json.dumps({task: name for task, (_, name) in best.items()}))
EOF
tar -czf "$out/runs.tgz" runs/results.jsonl runs/*.log

# GPU throughput: the server against per-task processes and naive per-request transformers.
per=$((bench_seconds / 2))
[ "$per" -gt 0 ] && for backbone in "$bundle/whisper-base" wavlm-base-plus; do
  timeout "$per" python3 -m benchmarks.throughput --backbone "$backbone" --device cuda --quick \
    --concurrency 4 16 64 --workdir /tmp/bench || echo "throughput $backbone exited $?"
done
tar -czf "$out/bench.tgz" benchmarks/results
