#!/usr/bin/env bash
# Runs on a lent GPU machine (no network): continue the joint (E+L+P+head) ASR training of a shipped
# set on the wide ASR corpus, three learning-rate variants side by side on the one GPU; every set comes
# back (choose on validation at home, score test there).
# The wide corpus's training audio (9.8 h, 49 MB as Opus), the encoder (34 MB) and the start set with its
# LM (15 MB) are over one call's 64 MiB, so the audio travels in 8 shards over two calls to the same warm
# machine, 7 in the first and one with everything else in the second (the run of 2026-11-27,
# docs/results/h200-asr-wide.md):
#   python -m training.device_bundle pack --out .device --corpus data/corpus-wide --splits train,valid \
#       --tasks asr --shards 8 --adapter-sets adapters_store/asr-default
#   mkdir -p .device-a && mv .device/corpus/audio-[1-7].tar.gz .device-a/
#   call 1 (carry .device-a): mkdir -p /tmp/elp-stage && cp .device-a/*.tar.gz /tmp/elp-stage/
#   call 2 (carry .device), at once: STAGED=/tmp/elp-stage scripts/device_asr.sh 6.2 asr-default
# adapters_store/ and docs/ stay home for both calls (git rm -r --cached, undone with git reset after).
# If the machine went back between the calls, the second trains on the shard it carried
# (training.device_bundle.trim_manifests drops the rows whose audio is missing).
# Usage: scripts/device_asr.sh MINUTES START_SET_NAME
# Smoke test on a CPU: BUNDLE=/tmp/bundle SKIP_WHEELS=1 DEVICE=cpu EXTRA="--max-train-clips 16 --max-eval-clips 8" \
#   scripts/device_asr.sh 0.2 asr-default
set -uo pipefail
shopt -s nullglob
minutes=${1:-6}; start=${2:-asr-default}
out=${OUT:-/tmp/out}; bundle=${BUNDLE:-.device}; mkdir -p "$out" store runs
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# shellcheck source=scripts/device_lib.sh
. "$(dirname "$0")/device_lib.sh"
for shard in "${STAGED:-/nonexistent}"/*.tar.gz; do cp "$shard" "$bundle/corpus/"; done
prepare_bundle "$bundle" || exit 1
[ -n "${DEVICE:-}" ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"

common=(--task asr --backbone "$bundle/whisper-base" --corpus "$bundle/corpus" --init-from "$bundle/sets/$start"
        --method elp --batch-size 32 --max-minutes "$minutes" --max-steps 100000 --warmup 0.002
        --eval-every 400 --patience 100 --num-workers 5 --quiet --results-json runs/results.jsonl ${EXTRA:-})
[ -n "${DEVICE:-}" ] && common+=(--device "$DEVICE") || common+=(--amp)
# The H200 continuation on the smaller corpus (docs/results/h200-asr-continuation.md) ran x1 and x2:
# x2 peaked early, x1 barely moved; x0.5 brackets them from below.
declare -A variants=(
  [asr-x05]="--lr-head 2.5e-4 --lr-l 1.5e-4 --lr-e 5e-5 --lr-p 1.5e-4 --seed 21"
  [asr-x1]="--lr-head 5e-4 --lr-l 3e-4 --lr-e 1e-4 --lr-p 3e-4 --seed 22"
  [asr-x2]="--lr-head 1e-3 --lr-l 6e-4 --lr-e 2e-4 --lr-p 6e-4 --seed 23"
)
train_variants
tail -n 4 runs/*.log
for name in "${!variants[@]}"; do
  [ -d "store/$name" ] || continue
  python3 -c "import sys; from elp.adapter_set import AdapterSet as S; s = S.load(sys.argv[1]); \
s.attach_language_model(None); s.save(sys.argv[1])" "store/$name"  # the LM stays home: re-attached there
  tar -czf "$out/$name.tgz" -C store "$name" -C ../runs "$name/history.json"
done
tar -czf "$out/logs.tgz" runs/results.jsonl runs/*.log
cat runs/results.jsonl
