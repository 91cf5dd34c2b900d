#!/usr/bin/env bash
# `make demo`: start a server on loopback, run short TCP and UDP tests in both directions
# against it, print the results, stop the server.
set -euo pipefail
BIN=${1:-target/release/btest}
PORT=${2:-2700}
UDP_FROM=$((PORT + 1))
LOG=$(mktemp)
"$BIN" server --listen "127.0.0.1:$PORT" --udp-port-from "$UDP_FROM" 2>"$LOG" &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null || true; cat "$LOG" >&2; rm -f "$LOG"' EXIT
# the server says where it listens once the socket is bound (at most 5 s)
for _ in $(seq 50); do
  grep -q "listening on" "$LOG" && break
  kill -0 $SRV 2>/dev/null || { echo "demo: the server did not start" >&2; exit 1; }
  sleep 0.1
done
echo "== TCP, both directions, 3 s =="
"$BIN" client "127.0.0.1:$PORT" --protocol tcp --direction both --duration 3s
echo
echo "== UDP, both directions, 3 s, 200 Mbit/s each way =="
REPORT=${REPORT:-$(dirname "$BIN")/demo-report.html}
"$BIN" client "127.0.0.1:$PORT" --protocol udp --direction both --duration 3s \
  --local-tx-speed 200M --remote-tx-speed 200M --report "$REPORT"
echo "demo: the HTML report of the UDP test is $REPORT"
