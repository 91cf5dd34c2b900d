#!/usr/bin/env bash
# `make cross-test`: every router image of `make cross` (aarch64, armv7, big- and little-endian
# MIPS) under qemu-user on loopback against the native x86_64 build, in both roles: the image
# as the server with the native client, then the native server with the image as the client.
# Each pairing runs TCP and UDP in every direction, a 4-connection TCP test, then MD5 and
# EC-SRP5 logins (right password, BTEST_PASSWORD, wrong password, none); each image also serves
# a --users file, and its role-only builds run when they exist. A test must exit as expected
# and, when it succeeds, report non-zero bytes in each direction it ran (its JSON summary), a
# peer-reported byte count of the same order as what was sent (a byte-swapped 32-bit status
# field would be off by orders of magnitude), and for UDP fewer lost datagrams than 2 s at
# 50 Mbit/s can carry (a byte-swapped sequence number reads as gaps of 2^24). The big-endian
# MIPS image against the little-endian native peer is the test the wire code never had before
# issue 21. An image that was not built is skipped, and said so.
# usage: scripts/cross-test.sh [IMAGE...]   (default: target/dist/btest-TRIPLE for each of
#        CROSS_TARGETS). Env: CROSS_TARGETS (default aarch64-unknown-linux-musl
#        armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl),
#        CROSS_NATIVE (the x86_64 peer: default target/dist/btest-x86_64-unknown-linux-musl,
#        else target/release/btest, else it builds the x86_64 image), CROSS_TEST_PORT (first
#        port to try, default 2800). Installs qemu-user-static when missing (root, apt-get).
set -euo pipefail
SCRIPT=cross-test
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
need_cmd readelf binutils

read -r -a TARGETS <<<"${CROSS_TARGETS:-aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl}"
if [ "$#" -gt 0 ]; then
  IMAGES=("$@")
  for i in "${IMAGES[@]}"; do [ -f "$i" ] || die "$i: no such file"; done
else
  IMAGES=()
  for t in "${TARGETS[@]}"; do IMAGES+=("$DIST/btest-$t"); done
fi

NATIVE=${CROSS_NATIVE:-}
if [ -z "$NATIVE" ]; then
  NATIVE=$DIST/btest-x86_64-unknown-linux-musl
  if [ ! -f "$NATIVE" ] && [ -f "$TARGET_DIR/release/btest" ]; then
    NATIVE=$TARGET_DIR/release/btest
  fi
  if [ ! -f "$NATIVE" ]; then
    say "no native x86_64 build: building the x86_64 router image"
    MUSL_TARGETS=x86_64-unknown-linux-musl MUSL_ROLES="" bash "$ROOT/scripts/build-musl.sh"
  fi
fi
[ -f "$NATIVE" ] || die "$NATIVE: no such file"
[ "$(host_arch)" = x86_64 ] || say "note: this host is $(host_arch), not x86_64: the native peer is $NATIVE"

work=$(mktemp -d)
SRV=""
stop_server() {
  if [ -n "$SRV" ]; then
    kill "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
    SRV=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf '  skip  %s\n' "$*"; }

# run RUNNER BINARY ARGS...: the binary natively (RUNNER empty) or under qemu-user.
run() {
  local r=$1
  shift
  if [ -n "$r" ]; then "$r" "$@"; else "$@"; fi
}

# start_server RUNNER BINARY ARGS...: starts it on a free port; sets PORT, SRV. Started
# directly, not through `run`: `run ... &` would fork a subshell, and SRV would be its PID, not
# the server's, which `stop_server` would then leave running.
start_server() {
  PORT=$(free_port "${CROSS_TEST_PORT:-2800}")
  local args=(server --listen "127.0.0.1:$PORT" --udp-port-from $((PORT + 1)) "${@:3}")
  if [ -n "$1" ]; then
    "$1" "$2" "${args[@]}" >"$work/server.log" 2>&1 &
  else
    "$2" "${args[@]}" >"$work/server.log" 2>&1 &
  fi
  SRV=$!
  if ! wait_listening "$PORT"; then
    say "the server did not start; its output:"
    cat "$work/server.log" >&2
    stop_server
    return 1
  fi
}

# field NAME < summary-line -> the number, or empty
field() { sed -n "s/.*\"$1\":\([0-9][0-9.eE+-]*\).*/\1/p" | head -n 1; }

# check NAME EXPECTED_RC DIRECTION RUNNER CLIENT_BINARY CLIENT_ARGS...
# Runs one client test; with EXPECTED_RC 0, checks its JSON summary (see the header).
check() {
  local name=$1 want=$2 dir=$3 runner=$4 bin=$5 rc=0
  shift 5
  run "$runner" "$bin" client "127.0.0.1:$PORT" --json "$@" >"$work/client.out" 2>"$work/client.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$name: exit code $rc, expected $want"
    sed 's/^/        /' "$work/client.err" "$work/client.out" | tail -n 5
    return
  fi
  if [ "$want" -ne 0 ]; then
    pass "$name (exit $rc: $(tail -n 1 "$work/client.err" | cut -c1-80))"
    return
  fi
  local summary tx rx rrx lost proto
  summary=$(grep '"type":"summary"' "$work/client.out" || true)
  if [ -z "$summary" ]; then
    fail "$name: no summary record in the JSON output"
    return
  fi
  tx=$(field tx_bytes <<<"$summary")
  rx=$(field rx_bytes <<<"$summary")
  rrx=$(field remote_rx_bytes <<<"$summary")
  lost=$(field lost_packets <<<"$summary")
  proto=udp
  grep -q '"protocol":"tcp"' <<<"$summary" && proto=tcp
  local bad=""
  case "$dir" in
    receive) [ "${rx:-0}" != 0 ] || bad="rx_bytes is ${rx:-missing}" ;;
    transmit) [ "${tx:-0}" != 0 ] || bad="tx_bytes is ${tx:-missing}" ;;
    both) [ "${tx:-0}" != 0 ] && [ "${rx:-0}" != 0 ] || bad="tx_bytes ${tx:-missing}, rx_bytes ${rx:-missing}" ;;
  esac
  # What the peer's statuses say it received, against what we sent: a status field decoded
  # in the wrong byte order is off by orders of magnitude (or zero).
  if [ -z "$bad" ] && [ "$dir" != receive ]; then
    if [ "${rrx:-0}" = 0 ] || [ "$rrx" -gt $((2 * tx + 1000000)) ]; then
      bad="the peer reported ${rrx:-no} bytes received for $tx sent"
    fi
  fi
  if [ -z "$bad" ] && [ "$proto" = udp ] && [ "$dir" != transmit ] && [ "${lost:-0}" -ge 100000 ]; then
    bad="$lost datagrams lost: sequence numbers misread?"
  fi
  if [ -n "$bad" ]; then
    fail "$name: $bad"
  else
    pass "$name: tx $tx B, rx $rx B, peer rx ${rrx:-0} B${lost:+, lost $lost}"
  fi
}

# pairing LABEL SRV_RUNNER SRV_BIN CLI_RUNNER CLI_BIN: the whole set for one server/client pair.
pairing() {
  local label=$1 sr=$2 sb=$3 cr=$4 cb=$5
  echo "-- $label: no authentication"
  if ! start_server "$sr" "$sb"; then
    fail "$label: the server did not start"
    return
  fi
  local proto dir rate
  for proto in tcp udp; do
    for dir in receive transmit both; do
      rate=()
      [ "$proto" = udp ] && rate=(--local-tx-speed 50M --remote-tx-speed 50M)
      check "$label, $proto $dir" 0 "$dir" "$cr" "$cb" --protocol "$proto" --direction "$dir" --duration 2s "${rate[@]}"
    done
  done
  check "$label, tcp both, 4 connections" 0 both "$cr" "$cb" --direction both --connection-count 4 --duration 2s
  stop_server
  local method
  for method in md5 ecsrp5; do
    echo "-- $label: $method"
    if ! start_server "$sr" "$sb" --auth "$method" --user cross --password 's3cret pw'; then
      fail "$label: the server with --auth $method did not start"
      continue
    fi
    check "$label, $method, right password" 0 receive "$cr" "$cb" --user cross --password 's3cret pw' --duration 2s
    BTEST_PASSWORD='s3cret pw' check "$label, $method, BTEST_PASSWORD, udp both" 0 both "$cr" "$cb" \
      --user cross --protocol udp --direction both --local-tx-speed 20M --remote-tx-speed 20M --duration 2s
    check "$label, $method, wrong password refused" 1 receive "$cr" "$cb" --user cross --password wrong --duration 2s
    check "$label, $method, no credentials refused" 1 receive "$cr" "$cb" --duration 2s
    stop_server
  done
}

echo "== native peer: $NATIVE ($("$NATIVE" --version 2>&1 | head -n 1))"
images_run=0
for img in "${IMAGES[@]}"; do
  name=$(basename "$img")
  if [ ! -f "$img" ]; then
    echo "== $name"
    skip "$name: not built ($img missing; make cross builds it)"
    continue
  fi
  qemu=$(qemu_for "$img")
  if [ -z "$qemu" ]; then
    echo "== $name"
    skip "$name: not an image qemu-user runs here (readelf: $(readelf -h "$img" 2>/dev/null | sed -n 's/^ *Machine: *//p'))"
    continue
  fi
  need_cmd "$qemu" qemu-user-static
  echo "== $name under $qemu ($(readelf -h "$img" | sed -n 's/^ *Data: *[^,]*, *//p'))"
  if ! ver=$("$qemu" "$img" --version 2>&1); then
    fail "$name --version: $ver"
    continue
  fi
  pass "$name --version: $ver"
  images_run=$((images_run + 1))
  pairing "$name server, native client" "$qemu" "$img" "" "$NATIVE"
  pairing "native server, $name client" "" "$NATIVE" "$qemu" "$img"

  echo "-- $name: --users file"
  if grep -q -- '--users' <<<"$("$qemu" "$img" --help 2>&1 || true)"; then
    printf 'alice:first pw\n# a comment\nbob:second\n' >"$work/users"
    chmod 600 "$work/users"
    if start_server "$qemu" "$img" --users "$work/users"; then
      check "$name server, --users file, second account" 0 transmit "" "$NATIVE" --user bob --password second --direction transmit --duration 2s
      check "$name server, --users file, unknown user refused" 1 receive "" "$NATIVE" --user carol --password second --duration 2s
      stop_server
    else
      fail "$name: the server with --users did not start"
    fi
  else
    skip "$name: --users is not in this binary's --help"
  fi

  echo "-- $name: role-only builds"
  triple=${name#btest-}
  SBIN=$(dirname "$img")/btest-server-$triple
  CBIN=$(dirname "$img")/btest-client-$triple
  if [ -f "$SBIN" ] && [ -f "$CBIN" ]; then
    if start_server "$qemu" "$SBIN"; then
      check "server-only $triple, native client, tcp both" 0 both "" "$NATIVE" --direction both --duration 2s
      stop_server
    fi
    if start_server "" "$NATIVE"; then
      check "native server, client-only $triple, udp both" 0 both "$qemu" "$CBIN" --protocol udp --direction both \
        --local-tx-speed 50M --remote-tx-speed 50M --duration 2s
      stop_server
    fi
    rc=0
    "$qemu" "$SBIN" client 127.0.0.1:1 >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then pass "server-only $triple refuses the client role (exit $rc)"; else fail "server-only $triple ran a client"; fi
  else
    skip "$name: no role-only builds in $(dirname "$img") (CROSS_ROLES=\"server client\" make cross builds them)"
  fi
done

echo "== $passed passed, $failed failed, $skipped skipped ($images_run of ${#IMAGES[@]} images run)"
[ "$failed" -eq 0 ]
