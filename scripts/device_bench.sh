#!/usr/bin/env bash
# Issue #20, GPU side, in ONE call on a lent GPU machine (no network; at most ~9 minutes, usually less):
# the GPU tests (tests/gpu: mixed batches equal each set alone under both routings, CUDA = CPU answers,
# the server on CUDA); the front end per row vs batched and the batch upload pageable vs pinned, B =
# 1/8/32 of 1-10 s clips, both backbones (benchmarks/frontend.py); what a mixed batch costs by the adapter
# sets in it under per-group vs gathered routing (benchmarks/routing.py); where one model-stage call's time
# goes: kernel time, host-device synchronisations, Python functions (benchmarks/model_stage.py); the CAM++
# voice branch of verify-default one row at a time vs one masked pass (benchmarks/voice_branch.py); then the
# one server (defaults: 64-row batches of any length mix; the former 16-row near-equal-length batches;
# decoding in processes) vs four per-task processes at concurrency 16 and 64, interleaved,
# on Whisper base and on a WavLM Base+-shaped encoder (benchmarks/throughput.py). Every table, PNG and log
# goes to $OUT as each step ends (tables.md collects the tables), so a call cut short keeps the steps that
# finished; each step has its own time limit, so a slow one costs its own table only. torch.compile / CUDA
# graphs for the frozen layers: not wired (the adapters run as forward hooks inside every layer, which both
# would have to capture).
#
# Bundle first, here (the GPU machine cannot fetch anything):
#   python -c "from pathlib import Path; from training.device_bundle import pack_encoder, download_wheels; \
#     pack_encoder(Path('models/whisper-base'), Path('.device-bench/whisper-base')); \
#     download_wheels(Path('.device-bench/wheels'), '3.12', serve=True)"
# then `scripts/device_tree.sh slim` (the shipped weights alone exceed the 64 MiB a call may carry; the
# bundle travels as an untracked folder, ~41 MB), the call, and `scripts/device_tree.sh restore`.
# Usage: scripts/device_bench.sh            on the GPU machine (DEVICE=cuda, the bundle in $BUNDLE)
#        DEVICE=cpu BACKBONE=<folder> PYTHON=.venv/bin/python scripts/device_bench.sh --quick
#                                           the same steps at toy sizes on a CPU (proves the script runs)
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0; [ "${1:-}" = "--quick" ] && quick=1
out=${OUT:-/tmp/out}; stage=${STAGE:-$(mktemp -d)}; device=${DEVICE:-cuda}; bundle=${BUNDLE:-.device-bench}; python=${PYTHON:-python3}
work=${WORKDIR:-/tmp/bench}
mkdir -p "$out" "$work" "$stage"
stamp=$(mktemp); touch "$stamp"  # results written after this are this run's
if [ "$quick" = 1 ]; then  # a rehearsal leaves the committed results alone
  export ELP_BENCH_RESULTS=${ELP_BENCH_RESULTS:-$(mktemp -d)}
fi
results=${ELP_BENCH_RESULTS:-benchmarks/results}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if [ -d "$bundle/wheels" ]; then
  # shellcheck source=scripts/device_lib.sh
  . scripts/device_lib.sh
  prepare_bundle "$bundle" || exit 1  # this bundle has no corpus or sets: only the encoder unpacks
fi
whisper=${BACKBONE:-$bundle/whisper-base}
wavlm=${WAVLM_BACKBONE:-wavlm-base-plus}  # random weights of the Base+ shape, built in the workdir
if [ "$quick" = 1 ]; then
  rows=4; repeats=2; levels="1 2"; requests=4; wavlm=$whisper; extra=(--clips 4); front=(--quick); voice=(--quick)
  limits=(300 300 300 300 300 300 300 300)
else
  rows=8; repeats=3; levels="16 64"; requests=128; extra=(); front=(--batch-sizes 1 8 32 --repeats 5)
  voice=(--batch-sizes 1 8 32 --repeats 3)
  # seconds: tests, front end x2, routing, model stage, throughput x2, voice branch (sum + set-up < 9.5 min; on
  # an H200 the first five took 15-22 s each, the Whisper throughput ~65 s a repeat of 5 systems x 2 levels)
  limits=(50 40 40 40 40 200 120 30)
fi
# gathered routing and two model workers were timed on the H200 (2026-12-04) and did not help; decoding
# in processes (ELP_DECODE_POOL, threads by default) is timed against the default threads
systems=(elp elp_b16 elp_dprocs per_task)
former=(--variant "elp_b16=--max-batch-size 16 --batch-length-ratio 0.5"  # the GPU defaults before 2026-12-04
        --variant "elp_dprocs=--decode-pool processes")

collect() {  # everything so far into $OUT/bench.tar.gz: the device tool brings back at most 8 files
  find "$results" -maxdepth 1 -newer "$stamp" \( -name '*.json' -o -name '*.png' \) -exec cp {} "$stage"/ \;
  tar czf "$out/bench.tar.gz.part" -C "$stage" . && mv "$out/bench.tar.gz.part" "$out/bench.tar.gz"
}

step() {  # NAME LIMIT COMMAND...: run under LIMIT seconds, log to NAME.log, note the load, collect
  local name=$1 limit=$2; shift 2
  echo "== $name: $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$stage/steps.log"
  timeout "$limit" "$@" >"$stage/$name.log" 2>&1
  echo "   $name exited $? at $(date -u +%T)" | tee -a "$stage/steps.log"
  tail -n 3 "$stage/$name.log"
  collect
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$stage/gpu.txt" 2>&1 || true
step gpu-tests "${limits[0]}" "$python" -m pytest tests/gpu -m gpu -q -p no:cacheprovider --timeout 50
step frontend-whisper "${limits[1]}" "$python" -m benchmarks.frontend --backbone "$whisper" --device "$device" "${front[@]}" \
  --workdir "$work"
step frontend-wavlm "${limits[2]}" "$python" -m benchmarks.frontend --backbone "$wavlm" --device "$device" "${front[@]}" \
  --workdir "$work/wavlm"
step routing-whisper "${limits[3]}" "$python" -m benchmarks.routing --backbone "$whisper" --device "$device" --rows "$rows" \
  --repeats $((repeats + 2)) --workdir "$work"
step model-stage-whisper "${limits[4]}" "$python" -m benchmarks.model_stage --backbone "$whisper" --device "$device" \
  --rows $((rows * 2)) --repeats $((repeats + 2)) --workdir "$work"
step voice-branch "${limits[7]}" "$python" -m benchmarks.voice_branch --device "$device" "${voice[@]}"
# shellcheck disable=SC2086
step throughput-whisper "${limits[5]}" "$python" -m benchmarks.throughput --backbone "$whisper" \
  --device "$device" --systems "${systems[@]}" "${former[@]}" --concurrency $levels --requests "$requests" --repeats "$repeats" --workdir "$work" "${extra[@]}"
# shellcheck disable=SC2086
step throughput-wavlm "${limits[6]}" "$python" -m benchmarks.throughput --backbone "$wavlm" --device "$device" \
  --systems elp elp_b16 per_task "${former[@]}" --concurrency ${levels##* } --requests "$requests" --repeats "$repeats" \
  --workdir "$work/wavlm" "${extra[@]}"

"$python" - "$stage" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
parts = []
for path in sorted(out.glob("*.json")):
    document = json.loads(path.read_text())
    parts.append(f"## {path.stem}\n\n`{document.get('command', '')}`\n\n{document.get('table', '')}\n")
(out / "tables.md").write_text("\n".join(parts))
print(f"{len(parts)} tables in {out / 'tables.md'}")
EOF
collect
cp "$stage/tables.md" "$out/"
