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
# shellcheck source=scripts/device_lib.sh
. "$(dirname "$0")/device_lib.sh"
prepare_bundle "$bundle" || exit 1  # this bundle has no corpus or sets: only the encoder unpacks
for benchmark in overhead churn memory; do
  timeout "$per" python3 -m benchmarks.$benchmark --backbone "$bundle/whisper-base" --device "$device" \
    --workdir /tmp/bench --quick ${EXTRA:-} || echo "$benchmark exited $?"
  tar -czf "$out/results.tgz" benchmarks/results
done
