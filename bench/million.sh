#!/bin/sh
# million.sh -- a store with FINISHED completed and RUNNING waiting
# orchestrations (default 1,000,000 and 100,000): dtsd's memory with them,
# how fast the management queries answer (first pages, against paging
# through everything in the same run), and how fast dtsd serves again after
# a restart (finished instances stay on disk; only running ones are loaded).
#
# usage: bench/million.sh BUILD_DIR [FINISHED] [RUNNING] [DURABILITY]
# Prints a table and a JSON line; exits 1 when a count is wrong, memory
# exceeds 1 GiB or the restart takes longer than 10 s.
set -eu
B=$1
FINISHED=${2:-1000000}
RUNNING=${3:-100000}
DUR=${4:-os}
T=$(mktemp -d)
PID=""
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$T"' EXIT

. "$(dirname "$0")/lib.sh"

start_dtsd
L="$B/bench/loadgen --target 127.0.0.1:$P"
echo "== seeding: $FINISHED finished orchestrations (external-event scenario), $RUNNING running ones"
$L --scenario events --orchestrations "$FINISHED" --concurrency 500 --id-prefix done- | head -1
$L --scenario park --orchestrations "$RUNNING" --concurrency 500 --id-prefix live- | head -1
RSS_LOADED=$(rss_mib "$PID")
echo "== queries over the store"
$L --scenario query --orchestrations "$FINISHED" --parked "$RUNNING" --id-prefix done- | tee "$T/q1"
stop_dtsd

echo "== restart"
start_dtsd
RSS_RESTART=$(rss_mib "$PID")
L="$B/bench/loadgen --target 127.0.0.1:$P"
$L --scenario query --orchestrations "$FINISHED" --parked "$RUNNING" --id-prefix done- | tee "$T/q2"
RSS_AFTER=$(rss_mib "$PID")
stop_dtsd
DISK_MIB=$(du -sm "$T/data" | cut -f1)

echo "million: $FINISHED finished + $RUNNING running; dtsd RSS ${RSS_LOADED} MiB after seeding, ${RSS_RESTART} MiB" \
  "after a restart, ${RSS_AFTER} MiB after the queries; restart serving in ${START_MS} ms; ${DISK_MIB} MiB on disk" \
  "(durability $DUR)"
echo "{\"bench\":\"million\",\"finished\":$FINISHED,\"running\":$RUNNING,\"rss_loaded_mib\":$RSS_LOADED," \
  "\"rss_restart_mib\":$RSS_RESTART,\"rss_after_queries_mib\":$RSS_AFTER,\"restart_ms\":$START_MS,\"disk_mib\":$DISK_MIB}"
rc=0
[ "$RSS_LOADED" -le 1024 ] && [ "$RSS_AFTER" -le 1024 ] || { echo "million: RSS over 1 GiB" >&2; rc=1; }
[ "$START_MS" -le 10000 ] || { echo "million: restart took over 10 s" >&2; rc=1; }
grep -q '"check":true' "$T/q1" && grep -q '"check":true' "$T/q2" || { echo "million: counts wrong" >&2; rc=1; }
exit $rc
