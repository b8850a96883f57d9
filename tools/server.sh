#!/bin/sh
# Build dtsd (release) and start it in the foreground.  Installs what is
# missing first (tools/deps.sh: apt-get, needs root or sudo; npm ci of the
# dashboard's pinned packages, from its lockfile).  Arguments are passed to
# dtsd; see `dtsd --help`.  Ctrl-C stops it cleanly.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/tools/deps.sh"
(cd "$ROOT/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
cmake -S "$ROOT" -B "$ROOT/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$ROOT/build-release" -j "$(nproc)" --target dtsd dtsctl
exec "$ROOT/build-release/server/dtsd" "$@"
