#!/bin/sh
# Build the Debian package: a Release build installed under /usr, packed by
# CPack into build-pkg/dtsd_<version>_<arch>.deb (its path is printed last).
# Installs what is missing first (tools/deps.sh).  Install it with
#   apt install ./build-pkg/dtsd_*.deb
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/tools/deps.sh"
(cd "$ROOT/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
B="$ROOT/build-pkg"
cmake -S "$ROOT" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DDTS_TESTS=OFF >/dev/null
cmake --build "$B" -j "${JOBS:-$(nproc)}" >&2
rm -f "$B"/dtsd_*.deb
(cd "$B" && cpack -G DEB >/dev/null)
ls "$B"/dtsd_*.deb
