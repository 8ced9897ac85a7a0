#!/usr/bin/env bash
# Issue #20, GPU side, in ONE call on a lent GPU machine (no network; ~7-8 minutes): the front end per row
# vs batched and the batch upload pageable vs pinned, B = 1/8/32 of 1-10 s clips, both backbones
# (benchmarks/frontend.py, ~1 min); what a mixed batch
# costs by the adapter sets in it under per-group vs gathered routing (benchmarks/routing.py), then the
# one server (per-group, gathered, two workers) vs four per-task processes at concurrency 16 and 64,
# interleaved, on Whisper base and on a WavLM Base+-shaped encoder (benchmarks/throughput.py). Every
# table and PNG goes to $OUT (tables.md collects the tables); each step has its own time limit, so a
# slow one costs its own table only. torch.compile / CUDA graphs for the frozen layers: not wired yet.
#
# Bundle first, here (the GPU machine cannot fetch anything):
#   python -c "from pathlib import Path; from training.device_bundle import pack_encoder, download_wheels; \
#     pack_encoder(Path('models/whisper-base'), Path('.device-bench/whisper-base')); \
#     download_wheels(Path('.device-bench/wheels'), '3.12', serve=True)"
# Usage: scripts/device_bench.sh            on the GPU machine (DEVICE=cuda, the bundle in $BUNDLE)
#        DEVICE=cpu BACKBONE=<folder> PYTHON=.venv/bin/python scripts/device_bench.sh --quick
#                                           the same steps at toy sizes on a CPU (proves the script runs)
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0; [ "${1:-}" = "--quick" ] && quick=1
out=${OUT:-/tmp/out}; device=${DEVICE:-cuda}; bundle=${BUNDLE:-.device-bench}; python=${PYTHON:-python3}
work=${WORKDIR:-/tmp/bench}
mkdir -p "$out" "$work"
stamp=$(mktemp); touch "$stamp"  # results written after this are this run's
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if [ -d "$bundle/wheels" ]; then
  # shellcheck source=scripts/device_lib.sh
  . scripts/device_lib.sh
  prepare_bundle "$bundle" || exit 1  # this bundle has no corpus or sets: only the encoder unpacks
fi
whisper=${BACKBONE:-$bundle/whisper-base}
wavlm=${WAVLM_BACKBONE:-wavlm-base-plus}  # random weights of the Base+ shape, built in the workdir
if [ "$quick" = 1 ]; then
  rows=4; repeats=2; levels="1 2"; requests=4; limit=300; wavlm=$whisper; extra=(--clips 4); front=(--quick)
else
  rows=8; repeats=3; levels="16 64"; requests=128; limit=170; extra=(); front=(--batch-sizes 1 8 32 --repeats 5)
fi
systems=(elp elp_gathered elp_2w per_task)

step() {  # NAME COMMAND...: run under the step limit, log to $OUT/NAME.log, note the load
  local name=$1; shift
  echo "== $name: $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/steps.log"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "   $name exited $? at $(date -u +%T)" | tee -a "$out/steps.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1 || true
step frontend-whisper "$python" -m benchmarks.frontend --backbone "$whisper" --device "$device" "${front[@]}" \
  --workdir "$work"
step frontend-wavlm "$python" -m benchmarks.frontend --backbone "$wavlm" --device "$device" "${front[@]}" \
  --workdir "$work/wavlm"
step routing-whisper "$python" -m benchmarks.routing --backbone "$whisper" --device "$device" --rows "$rows" \
  --repeats $((repeats + 2)) --workdir "$work"
# shellcheck disable=SC2086
step throughput-whisper "$python" -m benchmarks.throughput --backbone "$whisper" --device "$device" \
  --systems "${systems[@]}" --concurrency $levels --requests "$requests" --repeats "$repeats" --workdir "$work" "${extra[@]}"
# shellcheck disable=SC2086
step throughput-wavlm "$python" -m benchmarks.throughput --backbone "$wavlm" --device "$device" \
  --systems elp elp_gathered per_task --concurrency ${levels##* } --requests "$requests" --repeats "$repeats" \
  --workdir "$work/wavlm" "${extra[@]}"

find benchmarks/results -maxdepth 1 -newer "$stamp" \( -name '*.json' -o -name '*.png' \) -exec cp {} "$out"/ \;
"$python" - "$out" <<'EOF'
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
