#!/bin/sh
# Build a commit of this repository into a private directory, so a benchmark measures exactly that
# commit and not a shared working tree that other people are editing (and rebuilding) meanwhile.
#
#   bench/snapshot.sh [commit] [dir]     (defaults: HEAD, /tmp/artifacts-bench-snapshot)
#   then: cd <dir> && node dist/cli/main.js bench --quick
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-HEAD}
dir=${2:-/tmp/artifacts-bench-snapshot}
rm -rf "$dir"
mkdir -p "$dir"
git -C "$repo" archive "$commit" | tar -x -C "$dir"
ln -s "$repo/node_modules" "$dir/node_modules"
# git archive drops .git; the harness reads the commit from this file instead.
git -C "$repo" rev-parse --short "$commit" > "$dir/.commit"
cd "$dir" && npx tsc -p tsconfig.json
echo "built $(cat "$dir/.commit") in $dir"
