#!/usr/bin/env bash
# The README's first command: install what is missing, build, start the local stack and mount the
# workspace `demo` at ./demo. Safe to re-run (an existing workspace is mounted again).
#
#   bash scripts/quickstart.sh [workspace-name] [mountpoint]
set -euo pipefail
NAME=${1:-demo}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MNT=$(realpath -m "${2:-$PWD/$NAME}")
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

[[ $(id -u) == 0 ]] || { echo "run as root: mounting FUSE from /dev/fuse needs CAP_SYS_ADMIN" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js 20 is required" >&2; exit 1; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
[[ -e /usr/bin/fusermount3 ]] || need+=(fuse3)
if (( ${#need[@]} )); then
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ -c /dev/fuse ]] || modprobe fuse 2>/dev/null || true

cd "$ROOT"
if [[ ! -d node_modules ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [[ ! -f dist/cli/main.js || -n "$(find cli fs metadata chunkstore orchestrator -name '*.ts' -newer dist/cli/main.js -print -quit)" ]]; then
  say "npm run build"
  npm run build --silent
fi
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
A="node $ROOT/dist/cli/main.js"

say "artifacts up"
$A up

mkdir -p "$MNT"
if $A workspace show "$NAME" >/dev/null 2>&1; then
  if grep -q " $MNT fuse.artifacts " /proc/mounts; then
    say "$NAME is already mounted at $MNT"
  else
    say "artifacts mount $NAME $MNT"
    $A mount "$NAME" "$MNT"
  fi
else
  say "artifacts workspace create $NAME $MNT"
  $A workspace create "$NAME" "$MNT"
fi

echo "hello from artifacts" > "$MNT/hello.txt"
say "workspace $NAME is mounted at $MNT:"
ls -la "$MNT"
cat <<MSG

Try:  cp -r /etc "$MNT/"; ls "$MNT"; cat "$MNT/.stats" | head
Stop: node $ROOT/dist/cli/main.js unmount "$MNT" && node $ROOT/dist/cli/main.js down
MSG
