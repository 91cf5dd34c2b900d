#!/usr/bin/env bash
# `make rss`: the server's resident memory (VmRSS from /proc/PID/status): idle, then at its peak
# while a client runs 1 and then 20 TCP connections (RSS_DIRECTION, default both) against it,
# and after each test has ended. Budget (issue 5): idle <= 2 MiB, and each TCP connection adds
# <= 300 KiB. Exits 1 when over budget.
# usage: scripts/rss.sh [BINARY]  (default: target/dist/btest-ARCH-unknown-linux-musl, the
#        build that ships to routers, else target/release/btest).
# Env: RSS_PORT, RSS_DURATION (seconds, default 4), RSS_DIRECTION (default both).
set -euo pipefail
SCRIPT=rss
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
BIN=${1:-}
if [ -z "$BIN" ]; then
  for c in "$DIST/btest-$(host_arch)-unknown-linux-musl" "$TARGET_DIR/release/btest"; do
    [ -f "$c" ] && BIN=$c && break
  done
  [ -n "$BIN" ] || die "no binary: run 'make release' or 'make musl', or give one as an argument"
fi
[ -x "$BIN" ] || die "$BIN: not an executable"
DUR=${RSS_DURATION:-4}
DIR=${RSS_DIRECTION:-both} # client direction: both is the worst case (TX and RX threads)
IDLE_BUDGET=2048   # KiB
PER_CONN_BUDGET=300 # KiB

PORT=$(free_port "${RSS_PORT:-2900}")
"$BIN" server -q --listen "127.0.0.1:$PORT" --udp-port-from $((PORT + 1)) >/dev/null &
SRV=$!
trap 'kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null || true' EXIT
wait_listening "$PORT" || die "the server did not start"
sleep 1

rss() { proc_rss "$SRV"; }
threads() { proc_threads "$SRV"; }

idle=$(rss)
echo "binary: $BIN ($(stat -c %s "$BIN") bytes); client direction: $DIR"
printf '%-28s %9s %8s\n' state "RSS KiB" threads
printf '%-28s %9s %8s\n' "idle" "$idle" "$(threads)"

declare -A peak
fail=0
for n in 1 20; do
  "$BIN" client "127.0.0.1:$PORT" -q --protocol tcp --direction "$DIR" --connection-count "$n" \
    --duration "${DUR}s" >/dev/null &
  CL=$!
  max=0
  maxthreads=0
  while kill -0 "$CL" 2>/dev/null; do
    r=$(rss)
    t=$(threads)
    [ "$r" -gt "$max" ] && max=$r
    [ "$t" -gt "$maxthreads" ] && maxthreads=$t
    sleep 0.1
  done
  rc=0
  wait "$CL" || rc=$?
  [ "$rc" -eq 0 ] || { say "the client with $n connection(s) failed (exit $rc)"; fail=1; }
  peak[$n]=$max
  printf '%-28s %9s %8s\n' "peak, $n TCP connection(s)" "$max" "$maxthreads"
  sleep 1
  printf '%-28s %9s %8s\n' "after that session" "$(rss)" "$(threads)"
done

per1=$((peak[1] - idle))
per20=$(((peak[20] - idle) / 20))
echo "idle: $idle KiB (budget $IDLE_BUDGET KiB)"
echo "1 connection: +$per1 KiB; 20 connections: +$((peak[20] - idle)) KiB = +$per20 KiB each (budget $PER_CONN_BUDGET KiB each)"
[ "$idle" -le "$IDLE_BUDGET" ] || { say "idle RSS $idle KiB is over $IDLE_BUDGET KiB"; fail=1; }
[ "$per1" -le "$PER_CONN_BUDGET" ] || { say "one connection adds $per1 KiB, over $PER_CONN_BUDGET KiB"; fail=1; }
[ "$per20" -le "$PER_CONN_BUDGET" ] || { say "20 connections add $per20 KiB each, over $PER_CONN_BUDGET KiB"; fail=1; }
[ "$fail" -eq 0 ] && say "within budget"
exit "$fail"
