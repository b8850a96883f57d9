#!/bin/sh
# run.sh -- runs every fuzz target for a bounded time from its committed seed
# corpus (tests/fuzz/corpus/<target>), as CI does.  Fails on any crash, leak,
# sanitizer report or timeout; prints each target's executions.
#
#   tests/fuzz/run.sh <fuzz build dir> [seconds per target, default 60]
#
# New inputs the fuzzer finds go to a scratch directory, not the repository;
# a crashing input is kept in the scratch directory and named in the output.
set -eu
BUILD=$(cd "$1" && pwd)
SECS=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtsd-fuzz-run-XXXXXX")
# a smaller quarantine keeps the per-input leak scans quick (see README.md)
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in fuzz_decode fuzz_hub fuzz_store fuzz_http fuzz_auth; do
    mkdir -p "$WORK/$t"
    secs=$SECS
    case $t in fuzz_decode|fuzz_auth) secs=$(( SECS / 2 )) ;; esac
    echo "== $t for ${secs}s"
    if (cd "$WORK" && "$BUILD/tests/fuzz/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
            -print_final_stats=1 -artifact_prefix="$WORK/$t-" "$WORK/$t" "$HERE/corpus/$t" >"$WORK/$t.log" 2>&1); then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$WORK/$t.log" | sed 's/^/   /'
    else
        status=1
        echo "$t FAILED; its log ends:" >&2
        tail -n 60 "$WORK/$t.log" >&2
        ls "$WORK"/"$t"-* 2>/dev/null | sed 's/^/   crashing input: /' >&2 || true
    fi
done
[ $status -eq 0 ] && rm -rf "$WORK"
exit $status
