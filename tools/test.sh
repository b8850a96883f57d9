#!/bin/sh
# Build dtsd and run every test: the normal build, ASan+UBSan over everything,
# and TSan over the concurrency code (label "tsan").  Installs what is missing
# first (tools/deps.sh: apt-get, needs root or sudo; npm ci from the lockfiles).
# Exits non-zero when any build or test fails.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/tools/deps.sh" test
# the dashboard's build packages (esbuild, preact) and the tests' (the SDK, playwright-core)
for d in dashboard tests/e2e; do
    (cd "$ROOT/$d" && npm ci --no-audit --no-fund --loglevel=error)
done

JOBS=${JOBS:-$(nproc)}
build() { # build <dir> <sanitize>
    cmake -S "$ROOT" -B "$ROOT/$1" -G Ninja -DDTS_SANITIZE="$2" >/dev/null
    cmake --build "$ROOT/$1" -j "$JOBS"
}
runtests() { # runtests <dir> [ctest args]
    d=$1; shift
    (cd "$ROOT/$d" && ctest --output-on-failure --no-tests=error -j "$JOBS" "$@")
}

status=0
echo "== fuzz targets (clang, libFuzzer, ASan+UBSan)"
FUZZ_SECS=${FUZZ_SECS:-60}
if CC=clang CXX=clang++ cmake -S "$ROOT" -B "$ROOT/build-fuzz" -G Ninja -DDTS_SANITIZE=fuzz >/dev/null &&
   cmake --build "$ROOT/build-fuzz" -j "$JOBS"; then
    "$ROOT/tests/fuzz/run.sh" "$ROOT/build-fuzz" "$FUZZ_SECS" || status=1
else
    status=1
fi
echo "== normal build"
build build "" && runtests build || status=1
echo "== Debian package (tools/package.sh), checked in a throwaway root"
if deb=$("$ROOT/tools/package.sh" | tail -1); then "$ROOT/tests/package/check.sh" "$deb" || status=1; else status=1; fi
echo "== ASan+UBSan build"
build build-asan address && runtests build-asan || status=1
echo "== TSan build (concurrency tests)"
build build-tsan thread && runtests build-tsan -L tsan || status=1

if [ $status -ne 0 ]; then echo "test.sh: FAILED" >&2; else echo "test.sh: all passed"; fi
exit $status
