# lib.sh -- shell helpers the bench scripts source: start and stop a dtsd on
# a data directory, clocks, RSS.  Expects B (build dir), T (scratch dir) and
# DUR (durability) to be set; start_dtsd takes extra dtsd flags.
# HTTP listeners on free ports (the defaults, 8081 and 8082, may be taken;
# an older dtsd ignores these variables).
export DTSD_HTTP_ADDRESS=127.0.0.1:0 DTSD_HEALTH_ADDRESS=127.0.0.1:0
now_ms() { date +%s%3N; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start_dtsd() { # sets PID, P (gRPC port), HP (HTTP port) and START_MS (how long it took to serve)
  rm -f "$T/ready"
  mkfifo "$T/ready"
  t0=$(now_ms)
  "$B/server/dtsd" --address 127.0.0.1:0 --data-dir "$T/data" --durability "$DUR" --ports-fd 3 \
    --log-level warn "$@" >>"$T/dtsd.log" 2>&1 3>"$T/ready" &
  PID=$!
  P="" HP="" HLP=""
  read -r P HP HLP <"$T/ready" || true # the ports once serving (gRPC, HTTP, health); empty if dtsd died first
  [ -n "$P" ] || { echo "dtsd did not start: $(tail -3 "$T/dtsd.log")" >&2; exit 1; }
  START_MS=$(($(now_ms) - t0))
}

stop_dtsd() {
  kill -TERM "$PID"
  wait "$PID"
  PID=""
}
