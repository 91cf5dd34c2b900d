#!/usr/bin/env bash
# `make windows-test` (issue 21): the Windows build (make windows) under Wine against the native
# Linux build over loopback, in both roles: the .exe as client of a native server, then a
# native client of the .exe as server; TCP and UDP (receive, transmit, both), MD5 and EC-SRP5
# (right and wrong password). Every successful test must report non-zero bytes in each
# direction it ran in its JSON summary.
# Skips cleanly (exit 0, says why) when Wine is not installed, unless WINDOWS_TEST_REQUIRE=1.
# WINDOWS_TEST_QUICK=1 (CI) runs 12 of the 26 checks, 1 s each.
# usage: scripts/windows-test.sh [EXE [NATIVE]]   (defaults: target/dist/btest-x86_64-pc-
#        windows-gnu.exe, target/release/btest; both built first when no argument is given). Env: WINDOWS_TEST_PORT
#        (first port to try, default 2900), WINEPREFIX (default target/wine: made on first use).
set -euo pipefail
SCRIPT=windows-test
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
T=x86_64-pc-windows-gnu
EXE=${1:-$DIST/btest-$T.exe}
NATIVE=${2:-$TARGET_DIR/release/btest}

WINE=""
for w in wine wine64 /usr/lib/wine/wine64; do
  if command -v "$w" >/dev/null 2>&1; then
    WINE=$(command -v "$w")
    break
  fi
done
if [ -z "$WINE" ]; then
  [ "${WINDOWS_TEST_REQUIRE:-0}" = 1 ] && die "Wine is not installed (apt-get install wine64)"
  echo "$SCRIPT: skipped: Wine is not installed here (Debian: apt-get install wine64); the Windows build was not run"
  exit 0
fi
# Given no binaries, build both (cargo does nothing when they are up to date).
if [ "$#" -eq 0 ]; then
  bash "$ROOT/scripts/windows.sh"
  ${CARGO:-cargo} build --release
fi
[ -f "$EXE" ] || die "$EXE: no such file"
[ -x "$NATIVE" ] || die "$NATIVE: no such file"

export WINEPREFIX=${WINEPREFIX:-$TARGET_DIR/wine}
export WINEDEBUG=-all
mkdir -p "$WINEPREFIX"
work=$(mktemp -d)
SRV=""
stop_server() {
  if [ -n "$SRV" ]; then
    kill "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
    SRV=""
  fi
}
# wineserver outlives the last Windows process by a few seconds: end ours (this prefix only).
WINESERVER=$(dirname "$WINE")/wineserver
[ -x "$WINESERVER" ] || WINESERVER=wineserver
stop_wine() { "$WINESERVER" -k 2>/dev/null || true; }
trap 'stop_server; stop_wine; rm -rf "$work"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }

# run_exe ARGS...: the Windows binary under Wine.
run_exe() { "$WINE" "$EXE" "$@"; }
run_native() { "$NATIVE" "$@"; }

# start_server RUNNER ARGS...: a server on a free port; sets PORT, SRV (the server's own pid,
# not a subshell's, so stop_server ends it).
start_server() {
  PORT=$(free_port "${WINDOWS_TEST_PORT:-2900}")
  local cmd=("$NATIVE")
  [ "$1" = run_exe ] && cmd=("$WINE" "$EXE")
  "${cmd[@]}" server --listen "127.0.0.1:$PORT" --udp-port-from $((PORT + 1)) "${@:2}" \
    >"$work/server.log" 2>&1 &
  SRV=$!
  local _
  # Wine's first start in a new prefix takes a while: up to 60 s.
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$SRV" 2>/dev/null || break
    sleep 0.1
  done
  say "the server did not start; its output:"
  cat "$work/server.log" >&2
  return 1
}

field() { sed -n "s/.*\"$1\":\([0-9][0-9.eE+-]*\).*/\1/p" | head -n 1; }

# check NAME EXPECTED_RC DIRECTION RUNNER CLIENT_ARGS...
check() {
  local name=$1 want=$2 dir=$3 runner=$4 rc=0
  shift 4
  "$runner" client "127.0.0.1:$PORT" --json "$@" >"$work/client.out" 2>"$work/client.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$name: exit code $rc, expected $want"
    sed 's/^/        /' "$work/client.err" "$work/client.out" | tail -n 5
    return
  fi
  if [ "$want" -ne 0 ]; then
    pass "$name (exit $rc: $(tail -n 1 "$work/client.err" | tr -d '\r' | cut -c1-80))"
    return
  fi
  local summary tx rx bad=""
  summary=$(grep '"type":"summary"' "$work/client.out" || true)
  if [ -z "$summary" ]; then
    fail "$name: no summary record in the JSON output"
    sed 's/^/        /' "$work/client.err" | tail -n 5
    return
  fi
  tx=$(field tx_bytes <<<"$summary")
  rx=$(field rx_bytes <<<"$summary")
  case "$dir" in
    receive) [ "${rx:-0}" != 0 ] || bad="rx_bytes is ${rx:-missing}" ;;
    transmit) [ "${tx:-0}" != 0 ] || bad="tx_bytes is ${tx:-missing}" ;;
    both) [ "${tx:-0}" != 0 ] && [ "${rx:-0}" != 0 ] || bad="tx_bytes ${tx:-missing}, rx_bytes ${rx:-missing}" ;;
  esac
  if [ -n "$bad" ]; then fail "$name: $bad"; else pass "$name: tx $tx B, rx $rx B"; fi
}

# WINDOWS_TEST_QUICK=1 (CI): both directions at once only, no 4-connection test, logins over
# UDP only; 1 s tests.
DIRS=(receive transmit both)
DUR=2s
QUICK=${WINDOWS_TEST_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  DIRS=(both)
  DUR=1s
fi

# suite SERVER_RUNNER CLIENT_RUNNER: the same tests with the roles given.
suite() {
  local srv=$1 cli=$2
  start_server "$srv" || { fail "$srv server did not start"; return; }
  for proto in tcp udp; do
    for dir in "${DIRS[@]}"; do
      rate=()
      [ "$proto" = udp ] && rate=(--local-tx-speed 20M --remote-tx-speed 20M)
      check "$proto $dir" 0 "$dir" "$cli" --protocol "$proto" --direction "$dir" --duration "$DUR" "${rate[@]}"
    done
  done
  [ "$QUICK" = 1 ] || check "tcp both, 4 connections" 0 both "$cli" --direction both --connection-count 4 --duration "$DUR"
  stop_server
  for method in md5 ecsrp5; do
    start_server "$srv" --auth "$method" --user win --password 's3cret pw' \
      || { fail "$method server did not start"; continue; }
    [ "$QUICK" = 1 ] || check "$method, right password, tcp" 0 receive "$cli" --user win --password 's3cret pw' --duration "$DUR"
    check "$method, right password, udp both" 0 both "$cli" --user win --password 's3cret pw' \
      --protocol udp --direction both --local-tx-speed 20M --remote-tx-speed 20M --duration "$DUR"
    check "$method, wrong password refused" 1 receive "$cli" --user win --password wrong --duration "$DUR"
    stop_server
  done
}

# Wine before 9.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's std (1.78+) imports:
# build our stand-in (scripts/wine/) into this prefix's system32. Windows 10+ has the real one.
SYS32=$WINEPREFIX/drive_c/windows/system32
if [ ! -d "$SYS32" ]; then
  "$WINE" cmd /c exit >/dev/null 2>&1 || true # makes the prefix
fi
if [ ! -f "$SYS32/bcryptprimitives.dll" ] && ! "$WINE" --version 2>/dev/null | grep -qE 'wine-(9|[1-9][0-9])\.'; then
  need_cmd x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
  say "Wine $("$WINE" --version 2>/dev/null) lacks bcryptprimitives.dll: building the stand-in (scripts/wine/)"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$SYS32/bcryptprimitives.dll" \
    "$ROOT/scripts/wine/bcryptprimitives.c" "$ROOT/scripts/wine/bcryptprimitives.def" -lbcrypt
fi

echo "== $EXE under $WINE ($("$WINE" --version 2>/dev/null || echo '?'))"
t0=$(date +%s)
ver=$(run_exe --version 2>&1 | tr -d '\r') || die "the .exe does not run under Wine: $ver"
echo "   $ver (first start: $(($(date +%s) - t0)) s)"
echo "== the .exe as client, native server"
suite run_native run_exe
echo "== native client, the .exe as server"
suite run_exe run_native
echo "== $passed passed, $failed failed"
[ "$failed" -eq 0 ]
