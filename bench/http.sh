#!/bin/sh
# http.sh -- the HTTP side's figures, each against a baseline in the same
# run: the dashboard's first rows (its opening query) over FINISHED stored
# orchestrations (default 100,000) against a bare ping; the first history
# page (1,000 events) of a 50,000-event history against the whole history;
# and hello-5 throughput with 10 open live dashboards against none.  A
# dashboard here does what the orchestrations page does on a busy hub: its
# event stream, the rows in view again every 2 s and the counts every 30 s
# (the page's throttle; docs/dashboard.md).
#
# usage: bench/http.sh BUILD_DIR [FINISHED] [HELLO] [FAN]
#   FAN (default 25,000): activities of the one big fan-out, whose history
#   is 2*FAN events and a few more
# Prints a table and a JSON line; exits 1 when an answer is wrong.
set -eu
B=$1
FINISHED=${2:-100000}
HELLO=${3:-20000}
FAN=${4:-25000}
DUR=os
T=$(mktemp -d)
PID=""
WATCH=""
trap 'for w in $WATCH; do pkill -P "$w" 2>/dev/null || true; kill "$w" 2>/dev/null || true; done; if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$T"' EXIT

. "$(dirname "$0")/lib.sh"

start_dtsd
L="$B/bench/loadgen --target 127.0.0.1:$P"
API="http://127.0.0.1:$HP/api/v1/taskhubs"
echo "== seeding: $FINISHED finished orchestrations, 1,000 running, one with a history of $((2 * FAN)) events and more"
$L --scenario events --orchestrations "$FINISHED" --concurrency 500 --id-prefix done- | head -1
$L --scenario park --orchestrations 1000 --concurrency 200 --id-prefix live- | head -1
$L --scenario fanout --fanout "$FAN" --orchestrations 1 --concurrency 1 --id-prefix big- | head -1

# median of 5 timings (ms) of one curl request: time_ms METHOD PATH [BODY]
time_ms() {
  for _ in 1 2 3 4 5; do
    curl -s -o "$T/out" -w '%{time_total}\n' -X "$1" -H 'x-taskhub: default' -H 'content-type: application/json' \
      ${3:+--data "$3"} "$API$2"
  done | sort -n | sed -n 3p | awk '{ printf "%.2f", $1 * 1000 }'
}

# the dashboard's opening rows (no counts asked), its counts, and a sort the engine cannot walk in
OPEN='{"filter":{"hideSubOrchestrations":true},"pagination":{"startIndex":0,"count":100},"fetchTotalCount":false}'
COUNT='{"filter":{"hideSubOrchestrations":true},"pagination":{"startIndex":0,"count":1}}'
COUNT_PAGE='{"filter":{"hideSubOrchestrations":true},"pagination":{"startIndex":0,"count":1},"maxCountAgeMs":10000}'
BYNAME='{"pagination":{"startIndex":0,"count":100},"sort":[{"column":"NAME","direction":"ASCENDING_SORT"}]}'
RUN='{"filter":{"orchestrationStatus":{"status":["ORCHESTRATION_STATUS_RUNNING"]}},"pagination":{"startIndex":0,"count":100}}'
T_PING=$(time_ms GET /ping)
T_OPEN=$(time_ms POST /orchestrations/query "$OPEN")
OPEN_ROWS=$(grep -o '"instanceId"' "$T/out" | wc -l)
T_COUNT=$(time_ms POST /orchestrations/query "$COUNT")
COUNT_N=$(grep -o '"totalCount":[0-9]*' "$T/out" | head -1 | cut -d: -f2)
COUNT_TRUNC=$(grep -o '"truncated":[a-z]*' "$T/out" | cut -d: -f2)
T_NAME=$(time_ms POST /orchestrations/query "$BYNAME")
T_RUN=$(time_ms POST /orchestrations/query "$RUN")
RUN_TOTAL=$(grep -o '"totalCount":[0-9]*' "$T/out" | head -1 | cut -d: -f2)
T_HPAGE=$(time_ms GET '/orchestrations/big-0/executions/latest/history?startIndex=0&count=1000')
HPAGE_N=$(grep -o '"eventId"' "$T/out" | wc -l)
T_HALL=$(time_ms GET '/orchestrations/big-0/executions/latest/history')
HALL_N=$(grep -o '"totalCount":[0-9]*' "$T/out" | cut -d: -f2)

echo "== hello-5 without and with 10 open live dashboards"
$L --scenario hello --orchestrations "$HELLO" --concurrency 200 | tee "$T/h0" | head -1
# one dashboard: its stream, and the page's refreshes at their throttled pace
dashboard() {
  curl -s -N "$API/live?taskhub=default" >/dev/null &
  n=0
  while :; do
    curl -s -o /dev/null -H 'x-taskhub: default' --data "$OPEN" "$API/orchestrations/query"
    [ $((n % 15)) -eq 0 ] && curl -s -o /dev/null -H 'x-taskhub: default' --data "$COUNT_PAGE" "$API/orchestrations/query"
    n=$((n + 1))
    sleep 2 # the page's refresh interval under load (a load pattern, not a wait for an effect)
  done
}
for _ in 1 2 3 4 5 6 7 8 9 10; do
  dashboard &
  WATCH="$WATCH $!"
done
$L --scenario hello --orchestrations "$HELLO" --concurrency 200 | tee "$T/h1" | head -1
for w in $WATCH; do pkill -P "$w" 2>/dev/null || true; kill "$w" 2>/dev/null || true; done
WATCH=""
R0=$(sed -n 's/.*: \([0-9]*\) orchestrations\/s.*/\1/p' "$T/h0" | head -1)
R1=$(sed -n 's/.*: \([0-9]*\) orchestrations\/s.*/\1/p' "$T/h1" | head -1)
stop_dtsd

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "http: $FINISHED finished + 1,000 running stored"
echo "http: dashboard's first rows (newest 100, sub-orchestrations hidden) ${T_OPEN} ms = $(ratio "$T_OPEN" "$T_PING")x a ping (${T_PING} ms)"
echo "http: its counts ${T_COUNT} ms ($COUNT_N counted; truncated at --http-max-scan: $COUNT_TRUNC); first 100 by name ${T_NAME} ms"
echo "http: first 100 running ${T_RUN} ms ($RUN_TOTAL running)"
echo "http: $HALL_N-event history: first page (1,000 events) ${T_HPAGE} ms, whole ($HALL_N events) ${T_HALL} ms = $(ratio "$T_HPAGE" "$T_HALL")x"
echo "http: hello-5 ${R0}/s without, ${R1}/s with 10 live dashboards = $(ratio "$R1" "$R0")x"
echo "{\"bench\":\"http\",\"finished\":$FINISHED,\"ping_ms\":$T_PING,\"first_rows_ms\":$T_OPEN,\"counts_ms\":$T_COUNT,\"by_name_ms\":$T_NAME,\"running_page_ms\":$T_RUN," \
  "\"history_first_page_ms\":$T_HPAGE,\"history_all_ms\":$T_HALL,\"history_events\":$HALL_N,\"hello_per_s\":$R0," \
  "\"hello_per_s_10_dashboards\":$R1,\"dashboards_ratio\":$(ratio "$R1" "$R0")}"
rc=0
[ "$OPEN_ROWS" -eq 100 ] || { echo "http: the first page has $OPEN_ROWS rows, not 100" >&2; rc=1; }
[ "$RUN_TOTAL" -eq 1000 ] || { echo "http: $RUN_TOTAL running, not 1000" >&2; rc=1; }
[ "$HPAGE_N" -eq 1000 ] || [ "$FAN" -lt 500 ] || { echo "http: the history page has $HPAGE_N events" >&2; rc=1; }
[ "${HALL_N:-0}" -ge $((2 * FAN)) ] || { echo "http: the history has ${HALL_N:-0} events, not $((2 * FAN))+" >&2; rc=1; }
exit $rc
