# Shared by scripts/device_*.sh on a lent GPU machine (sourced, not run).

# Install the bundle's wheels with --target (the only way to add packages there: nothing can be
# fetched) unless SKIP_WHEELS is set, put them on PYTHONPATH, and unpack the bundle in place.
prepare_bundle() {  # BUNDLE_FOLDER
  local bundle=$1
  if [ -z "${SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$bundle"/wheels/*.whl || return 1
  fi
  export PYTHONPATH=/tmp/site:$PWD
  python3 -m training.device_bundle unpack --corpus "$bundle/corpus" --backbone "$bundle/whisper-base" \
    --adapter-sets "$bundle/sets" --workers 16
}

# Train every entry of the associative array `variants` (name -> extra training arguments) at
# once, one process each, with the arguments in the array `common`; sets go to store/NAME, run
# folders to runs/NAME, logs to runs/NAME.log.
train_variants() {
  local name
  for name in "${!variants[@]}"; do
    # shellcheck disable=SC2086,SC2154
    python3 -m training.train "${common[@]}" ${variants[$name]} --out "store/$name" --run-dir "runs/$name" \
      >"runs/$name.log" 2>&1 &
  done
  wait
}
