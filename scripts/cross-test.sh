#!/usr/bin/env bash
# `make cross-test`: runs the static aarch64 binary under qemu-user on loopback, server and
# client both emulated: TCP and UDP in every direction, then MD5 and EC-SRP5 logins (right
# password, BTEST_PASSWORD, wrong password, --users file), then the role-only builds when they
# exist. Every test must exit as expected and, when it succeeds, report non-zero bytes in each
# direction it ran in its JSON summary. Installs the rustup target and qemu-user-static if missing.
# usage: scripts/cross-test.sh [AARCH64_BINARY]   (default: target/dist/btest-aarch64-..., built
#        when missing). Env: CROSS_TEST_PORT (first port to try, default 2800).
set -euo pipefail
SCRIPT=cross-test
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
T=aarch64-unknown-linux-musl
BIN=${1:-$DIST/btest-$T}
if [ ! -f "$BIN" ]; then
  [ "$#" -eq 0 ] || die "$BIN: no such file"
  say "$BIN missing: building it"
  MUSL_TARGETS=$T bash "$ROOT/scripts/build-musl.sh"
fi
need_cmd qemu-aarch64-static qemu-user-static
QEMU=qemu-aarch64-static

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

# start_server BINARY ARGS...: starts it under qemu on a free port; sets PORT, SRV.
start_server() {
  PORT=$(free_port "${CROSS_TEST_PORT:-2800}")
  "$QEMU" "$1" server --listen "127.0.0.1:$PORT" --udp-port-from $((PORT + 1)) "${@:2}" \
    >"$work/server.log" 2>&1 &
  SRV=$!
  if ! wait_listening "$PORT"; then
    say "the server did not start; its output:"
    cat "$work/server.log" >&2
    return 1
  fi
}

# field NAME < summary-line -> the number, or empty
field() { sed -n "s/.*\"$1\":\([0-9][0-9.eE+-]*\).*/\1/p" | head -n 1; }

# check NAME EXPECTED_RC DIRECTION CLIENT_BINARY CLIENT_ARGS...
# Runs one client test; with EXPECTED_RC 0, requires non-zero bytes for DIRECTION.
check() {
  local name=$1 want=$2 dir=$3 bin=$4 rc=0
  shift 4
  "$QEMU" "$bin" client "127.0.0.1:$PORT" --json "$@" >"$work/client.out" 2>"$work/client.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$name: exit code $rc, expected $want"
    sed 's/^/        /' "$work/client.err" "$work/client.out" | tail -n 5
    return
  fi
  if [ "$want" -ne 0 ]; then
    pass "$name (exit $rc: $(tail -n 1 "$work/client.err" | cut -c1-90))"
    return
  fi
  local summary tx rx
  summary=$(grep '"type":"summary"' "$work/client.out" || true)
  if [ -z "$summary" ]; then
    fail "$name: no summary record in the JSON output"
    return
  fi
  tx=$(field tx_bytes <<<"$summary")
  rx=$(field rx_bytes <<<"$summary")
  local bad=""
  case "$dir" in
    receive) [ "${rx:-0}" != 0 ] || bad="rx_bytes is ${rx:-missing}" ;;
    transmit) [ "${tx:-0}" != 0 ] || bad="tx_bytes is ${tx:-missing}" ;;
    both) [ "${tx:-0}" != 0 ] && [ "${rx:-0}" != 0 ] || bad="tx_bytes ${tx:-missing}, rx_bytes ${rx:-missing}" ;;
  esac
  if [ -n "$bad" ]; then
    fail "$name: $bad"
  else
    pass "$name: tx $tx B, rx $rx B"
  fi
}

echo "== $BIN under $QEMU"
"$QEMU" "$BIN" --version || die "the aarch64 binary does not run under $QEMU"

echo "== no authentication"
start_server "$BIN"
for proto in tcp udp; do
  for dir in receive transmit both; do
    rate=()
    [ "$proto" = udp ] && rate=(--local-tx-speed 50M --remote-tx-speed 50M)
    check "$proto $dir" 0 "$dir" "$BIN" --protocol "$proto" --direction "$dir" --duration 2s "${rate[@]}"
  done
done
check "tcp both, 4 connections" 0 both "$BIN" --direction both --connection-count 4 --duration 2s
stop_server

echo "== authentication"
for method in md5 ecsrp5; do
  if ! start_server "$BIN" --auth "$method" --user cross --password 's3cret pw'; then
    if grep -qiE 'not (yet )?(supported|implemented)' "$work/server.log"; then
      skip "$method: the server says it is not supported"
      continue
    fi
    die "the server with --auth $method did not start"
  fi
  check "$method, right password" 0 receive "$BIN" --user cross --password 's3cret pw' --duration 2s
  BTEST_PASSWORD='s3cret pw' check "$method, password from BTEST_PASSWORD, udp" 0 both "$BIN" \
    --user cross --protocol udp --direction both --local-tx-speed 20M --remote-tx-speed 20M --duration 2s
  check "$method, wrong password refused" 1 receive "$BIN" --user cross --password wrong --duration 2s
  check "$method, no credentials refused" 1 receive "$BIN" --duration 2s
  stop_server
done
help=$("$QEMU" "$BIN" --help 2>&1 || true)
if grep -q -- '--users' <<<"$help"; then
  printf 'alice:first pw\n# a comment\nbob:second\n' >"$work/users"
  chmod 600 "$work/users"
  start_server "$BIN" --users "$work/users"
  check "--users file, second account" 0 transmit "$BIN" --user bob --password second --direction transmit --duration 2s
  check "--users file, unknown user refused" 1 receive "$BIN" --user carol --password second --duration 2s
  stop_server
else
  skip "--users: not in this binary's --help"
fi

echo "== role-only builds"
SBIN=$DIST/btest-server-$T
CBIN=$DIST/btest-client-$T
if [ -f "$SBIN" ] && [ -f "$CBIN" ]; then
  start_server "$SBIN"
  check "server-only + client-only, tcp both" 0 both "$CBIN" --direction both --duration 2s
  check "server-only + client-only, udp both" 0 both "$CBIN" --protocol udp --direction both \
    --local-tx-speed 50M --remote-tx-speed 50M --duration 2s
  stop_server
  rc=0
  "$QEMU" "$SBIN" client 127.0.0.1:1 >/dev/null 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then pass "server-only build refuses the client role (exit $rc)"; else fail "server-only build ran a client"; fi
else
  skip "no role-only aarch64 builds in $DIST: make musl builds them (Cargo.toml features server, client)"
fi

echo "== $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
