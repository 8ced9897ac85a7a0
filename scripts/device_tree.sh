#!/usr/bin/env bash
# Make the working tree small enough for the device tool, and put it back afterwards.
#
# Why: a device call sends the tracked files, plus untracked files git does not ignore, and refuses more
# than 64 MiB. The shipped adapter weights alone are ~76 MB, and a GPU benchmark needs none of them.
#   slim     untrack the tracked files over --min-bytes (default 1 MB) under adapters_store/ and docs/.
#            They stay on disk: the index only, plus .git/info/exclude so they do not travel as untracked
#            files. Then print what would travel. Refused while anything is staged, so the two never mix.
#   restore  re-track exactly those files and drop the exclude lines (idempotent).
#   size     print what would travel now (MiB of disk blocks, as the tool counts).
# Never commit between slim and restore: the commit would delete the weights.
#
# Usage: scripts/device_tree.sh slim|restore|size [--min-bytes N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

git_dir=$(git rev-parse --git-dir)
list="$git_dir/device-slim.list"
exclude="$git_dir/info/exclude"
min_bytes=1000000
action=${1:-size}
if [[ "${2:-}" == "--min-bytes" ]]; then min_bytes=${3:?--min-bytes needs a number}; fi

travelling_mib() {
    { git ls-files -z; git ls-files -z --others --exclude-standard; } |
        sort -zu | xargs -0 -r du -k -- 2>/dev/null | awk '{kib += $1} END {printf "%.1f\n", kib / 1024}'
}

case "$action" in
    slim)
        if ! git diff --cached --quiet; then
            echo "refused: the index has staged changes; commit or unstage them first" >&2; exit 1
        fi
        if [[ -s "$list" ]]; then echo "already slim (run restore first)" >&2; exit 1; fi
        git ls-files -z -- adapters_store docs | xargs -0 -r stat -c '%s %n' |
            awk -v min="$min_bytes" '$1 > min {print $2}' >"$list"
        if [[ ! -s "$list" ]]; then echo "nothing over $min_bytes bytes"; rm -f "$list"; exit 0; fi
        mkdir -p "$(dirname "$exclude")"
        while read -r path; do
            git rm -q --cached -- "$path"
            echo "/$path" >>"$exclude"
        done <"$list"
        echo "untracked $(wc -l <"$list") files; travelling: $(travelling_mib) MiB (limit 64)"
        ;;
    restore)
        if [[ -s "$list" ]]; then
            xargs -r git reset -q HEAD -- <"$list"
            if [[ -f "$exclude" ]]; then  # drop exactly the lines slim added
                sed 's|^|/|' "$list" | grep -v -x -F -f - "$exclude" >"$exclude.tmp" || true
                mv "$exclude.tmp" "$exclude"
            fi
            rm -f "$list"
        fi
        echo "restored; travelling: $(travelling_mib) MiB"
        ;;
    size)
        echo "travelling: $(travelling_mib) MiB (limit 64)"
        ;;
    *)
        sed -n '2,14p' "$0"; exit 2
        ;;
esac
