#!/usr/bin/env bash
# Runs on a lent GPU machine (no network), in one short call: the serving-overhead, adapter-churn and
# memory benchmarks on the GPU with the embedded Whisper base encoder (throughput has its own runs).
# Bundle first, here:
#   python -c "from pathlib import Path; from training.device_bundle import pack_encoder, download_wheels; \
#     pack_encoder(Path('models/whisper-base'), Path('.device-bench/whisper-base')); \
#     download_wheels(Path('.device-bench/wheels'), '3.12', serve=True)"
# Usage: scripts/device_bench.sh [SECONDS_PER_BENCHMARK]
set -uo pipefail
per=${1:-75}; out=${OUT:-/tmp/out}; bundle=${BUNDLE:-.device-bench}; device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  "$bundle"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -m training.device_bundle unpack --corpus /nonexistent --backbone "$bundle/whisper-base" \
  --adapter-sets /nonexistent --workers 1 || exit 1
for benchmark in overhead churn memory; do
  timeout "$per" python3 -m benchmarks.$benchmark --backbone "$bundle/whisper-base" --device "$device" \
    --workdir /tmp/bench --quick ${EXTRA:-} || echo "$benchmark exited $?"
  tar -czf "$out/results.tgz" benchmarks/results
done
