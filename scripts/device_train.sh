#!/usr/bin/env bash
# Runs on a lent GPU machine (no network): unpack the bundle made by
#   python -m training.device_bundle pack --out .device   (encoder, corpus as Opus, py3.12 wheels)
# then train the default adapter sets and the method comparison in one go, four tasks in parallel.
# Usage: scripts/device_train.sh STEPS MINUTES_PER_RUN [extra compare args]
set -euo pipefail
shopt -s nullglob
steps=${1:-1200}; minutes=${2:-0.75}; shift 2 || true
out=${OUT:-/tmp/out}; bundle=${BUNDLE:-.device}; mkdir -p "$out"
python3 -c "import soundfile, jiwer" 2>/dev/null || python3 -m pip install --no-index --no-deps -q "$bundle"/wheels/*.whl
python3 -m training.device_bundle unpack --corpus "$bundle/corpus" --backbone "$bundle/whisper-base" --adapter-sets "$bundle/sets" --workers 16
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m training.compare --backbone "$bundle/whisper-base" --corpus "$bundle/corpus" --parallel --amp --budget-minutes "${BUDGET_MINUTES:-7.5}" \
  --steps "$steps" --minutes "$minutes" --batch-size 32 --eval-every 150 --num-workers 3 \
  --random-backbone --store store --out-dir results "$@" || echo "compare exited $?"
for set in store/*/; do tar -czf "$out/$(basename "$set").tgz" -C store "$(basename "$set")"; done
tar -czf "$out/results.tgz" --exclude='*.safetensors' --exclude='random-backbone' results
cp results/comparison.md "$out/" 2>/dev/null || true
