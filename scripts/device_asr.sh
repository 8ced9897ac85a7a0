#!/usr/bin/env bash
# Runs on a lent GPU machine (no network), in one call: continue the joint (E+L+P+head) ASR training
# of a CPU-trained set on the larger ASR corpus, two learning-rate variants side by side on the one
# GPU; both sets come back (choose on validation at home, score test there, add the LM there).
# Bundle first, here (ASR audio only, the start set as fp16, training wheels only):
#   python -m training.device_bundle pack --out .device --corpus data/corpus-plus --splits train,valid \
#       --tasks asr --adapter-sets runs/asr-cpu-ep3/set
# That is 64 MB; with the repository's 41 MB of tracked files it is over the tool's 64 MiB. The run of
# 2026-11-27 (docs/results/h200-asr-continuation.md) kept adapters_store/ and docs/ home for the call
# (git rm -r --cached adapters_store docs + the two paths in .git/info/exclude, undone with git reset
# right after) and dropped every 4th asrx training clip from audio.tar.gz and asr.jsonl.gz by hand.
# Usage: scripts/device_asr.sh MINUTES START_SET_NAME
# Smoke test on a CPU: BUNDLE=/tmp/bundle SKIP_WHEELS=1 DEVICE=cpu EXTRA="--max-train-clips 16 --max-eval-clips 8" \
#   scripts/device_asr.sh 0.2 set
set -uo pipefail
shopt -s nullglob
minutes=${1:-6}; start=${2:-set}
out=${OUT:-/tmp/out}; bundle=${BUNDLE:-.device}; mkdir -p "$out" store runs
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# shellcheck source=scripts/device_lib.sh
. "$(dirname "$0")/device_lib.sh"
prepare_bundle "$bundle" || exit 1
[ -n "${DEVICE:-}" ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"

common=(--task asr --backbone "$bundle/whisper-base" --corpus "$bundle/corpus" --init-from "$bundle/sets/$start"
        --method elp --batch-size 32 --max-minutes "$minutes" --max-steps 100000 --warmup 0.002
        --eval-every 300 --patience 100 --num-workers 7 --quiet --results-json runs/results.jsonl ${EXTRA:-})
[ -n "${DEVICE:-}" ] && common+=(--device "$DEVICE") || common+=(--amp)
# CPU rates of the last continuation x1 (same per-step size at 4x the batch: the safe one) and x2.
declare -A variants=(
  [asr-x1]="--lr-head 5e-4 --lr-l 3e-4 --lr-e 1e-4 --lr-p 3e-4 --seed 11"
  [asr-x2]="--lr-head 1e-3 --lr-l 6e-4 --lr-e 2e-4 --lr-p 6e-4 --seed 12"
)
train_variants
tail -n 4 runs/*.log
for name in "${!variants[@]}"; do
  [ -d "store/$name" ] && tar -czf "$out/$name.tgz" -C store "$name" -C ../runs "$name/history.json"
done
tar -czf "$out/logs.tgz" runs/results.jsonl runs/*.log
cat runs/results.jsonl
