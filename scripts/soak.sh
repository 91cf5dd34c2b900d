#!/usr/bin/env bash
# `make soak` (second half): one server's resident memory over waves of concurrent sessions.
# Each wave starts SOAK_WAVE_SESSIONS clients (default 100, the default --max-sessions), half
# TCP and half UDP, both directions at 1 Mbit/s for 5 s, 20 ms apart; the script records the
# peak RSS and threads while the wave runs and the idle RSS 1.5 s after it. At the end, where
# the idle memory is, from /proc/PID/smaps: malloc arenas (glibc's per-thread heaps, 64 MiB
# aligned), cached thread stacks (256 KiB), the main heap, the rest.
# Fails (exit 1) when the idle RSS after the last wave is more than SOAK_IDLE_MARGIN KiB
# (default 4096) above the idle RSS before the first, or a client fails.
# usage: scripts/soak.sh [BINARY]  (default target/release/btest)
# Env: SOAK_WAVES (default 8), SOAK_WAVE_SESSIONS, SOAK_PORT, SOAK_UDP_FROM (default 63300),
#      SOAK_IDLE_MARGIN. docs/reliability.md has the figures per C library and why.
set -euo pipefail
SCRIPT=soak
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
BIN=${1:-$TARGET_DIR/release/btest}
[ -x "$BIN" ] || die "$BIN: not an executable (run 'make release', or give a binary)"
WAVES=${SOAK_WAVES:-8}
N=${SOAK_WAVE_SESSIONS:-100}
MARGIN=${SOAK_IDLE_MARGIN:-4096}
UDP_FROM=${SOAK_UDP_FROM:-63300}

PORT=$(free_port "${SOAK_PORT:-2950}")
"$BIN" server -q --listen "127.0.0.1:$PORT" --udp-port-from "$UDP_FROM" >/dev/null &
SRV=$!
CLIENTS=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  for p in "${CLIENTS[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$SRV" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
wait_listening "$PORT" || die "the server did not start"
sleep 1

rss() { proc_rss "$SRV"; }
threads() { proc_threads "$SRV"; }

idle0=$(rss)
echo "binary: $BIN; $WAVES waves of $N sessions (TCP and UDP, both directions, 1 Mbit/s, 5 s)"
printf '%-8s %14s %12s %14s %8s\n' wave "peak RSS KiB" "peak thr." "idle RSS KiB" failed
printf '%-8s %14s %12s %14s %8s\n' before - "$(threads)" "$idle0" -
fail=0
for w in $(seq 1 "$WAVES"); do
  CLIENTS=()
  for i in $(seq 1 "$N"); do
    proto=tcp
    [ $((i % 2)) -eq 0 ] && proto=udp
    "$BIN" client "127.0.0.1:$PORT" -q --protocol "$proto" --direction both \
      --local-tx-speed 1M --remote-tx-speed 1M --duration 5s >/dev/null &
    CLIENTS+=($!)
    sleep 0.02
  done
  peak=0
  peak_threads=0
  while kill -0 "${CLIENTS[0]}" 2>/dev/null || kill -0 "${CLIENTS[-1]}" 2>/dev/null; do
    r=$(rss)
    t=$(threads)
    [ "$r" -gt "$peak" ] && peak=$r
    [ "$t" -gt "$peak_threads" ] && peak_threads=$t
    sleep 0.1
  done
  failed=0
  for p in "${CLIENTS[@]}"; do wait "$p" || failed=$((failed + 1)); done
  CLIENTS=()
  [ "$failed" -eq 0 ] || fail=1
  sleep 1.5
  printf '%-8s %14s %12s %14s %8s\n' "$w" "$peak" "$peak_threads" "$(rss)" "$failed"
done
idle=$(rss)

# Where the idle memory is. Arenas: anonymous mappings on 64 MiB boundaries (glibc's
# HEAP_MAX_SIZE); stacks: anonymous 256 KiB mappings (our threads' stack size).
awk '
  /^[0-9a-f]+-[0-9a-f]+ / {
    split($1, a, "-"); addr = a[1]; name = (NF >= 6) ? $6 : ""
    aligned = (addr ~ /[048c]000000$/) && length(addr) > 7
    next
  }
  /^Size:/ { size = $2 }
  /^Rss:/ {
    k = "other"
    if (name == "[heap]") k = "main heap"
    else if (name == "" && aligned) k = "malloc arenas"
    else if (name == "" && size == 256) k = "thread stacks"
    else if (name != "") k = "files (binary, libc)"
    rss[k] += $2; n[k]++
  }
  END { for (k in rss) printf "%9d KiB in %4d mappings: %s\n", rss[k], n[k], k }
' "/proc/$SRV/smaps" | sort -nr

echo "idle RSS: $idle0 KiB before, $idle KiB after $WAVES waves (margin $MARGIN KiB)"
[ "$idle" -le $((idle0 + MARGIN)) ] || {
  say "idle RSS grew by $((idle - idle0)) KiB, over $MARGIN KiB"
  fail=1
}
[ "$fail" -eq 0 ] && say "ok"
exit "$fail"
