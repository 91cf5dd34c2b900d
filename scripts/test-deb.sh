#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && ok || bad`: ok and bad only print, they never fail
# The .deb, end to end (issue 21; run by tests/packages.rs in `make test`, and by itself):
# builds it from BINARY with package-deb.sh, checks its control fields, conffiles, maintainer
# scripts and file list with dpkg-deb, installs it with dpkg -i, runs /usr/bin/btest --version
# and a 1 s loopback test (the installed server and client), checks a changed
# /etc/default/btest survives a reinstall (dpkg's upgrade path), then dpkg --purge and checks
# nothing is left. Leaves the system as it found it: it refuses to run (exit 77, "skip") when
# any of its paths already exists or a btest package is installed.
# usage: scripts/test-deb.sh [BINARY]   (default target/release/btest; the test suite passes
#        its debug build, stripped here first to keep the package small and quick to build).
# Exit: 0 passed, 1 failed, 77 skipped (not root, no dpkg, the system has a btest already).
set -euo pipefail
SCRIPT=test-deb
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
skip() {
  say "skip: $*"
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "dpkg -i needs root"
command -v dpkg >/dev/null && command -v dpkg-deb >/dev/null || skip "dpkg and dpkg-deb not found (not a Debian system)"
BIN=$(realpath "${1:-$TARGET_DIR/release/btest}")
[ -x "$BIN" ] || die "$BIN: no such binary"

# One run at a time on this machine (several worktrees run `make test` at once).
lock=/run/lock/btest-test-deb.lock
[ -d /run/lock ] || lock=/tmp/btest-test-deb.lock
exec 9>"$lock"
flock -w 120 9 || die "another test-deb.sh held the lock for 2 minutes"

PATHS=(/usr/bin/btest /etc/default/btest /usr/lib/systemd/system/btest.service
  /lib/systemd/system/btest.service /usr/share/man/man1/btest.1.gz /var/lib/btest
  /var/lib/private/btest /usr/share/bash-completion/completions/btest)
if dpkg-query -W -f '${Status}' btest 2>/dev/null | grep -q installed; then
  skip "a btest package is installed on this machine; the test would replace it"
fi
for p in "${PATHS[@]}"; do
  [ ! -e "$p" ] && [ ! -L "$p" ] || skip "$p exists; the test would overwrite or remove it"
done

work=$(mktemp -d)
SRV=""
installed=0
cleanup() {
  if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; fi
  if [ "$installed" = 1 ]; then dpkg --purge btest >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# dpkg waits for no lock: retry while apt or another dpkg holds it (at most 60 s).
dpkg_retry() {
  local _
  for _ in $(seq 30); do
    if dpkg "$@" >"$work/dpkg.log" 2>&1; then return 0; fi
    grep -qi 'lock' "$work/dpkg.log" || break
    sleep 2
  done
  cat "$work/dpkg.log" >&2
  return 1
}

cp "$BIN" "$work/btest"
strip "$work/btest" 2>/dev/null || true
t0=$(date +%s.%N)
deb=$(DEB_OUT="$work/out" DEB_COMPRESS=${DEB_COMPRESS:-gzip} DEB_LEVEL=${DEB_LEVEL:-1} \
  COMPLETIONS_BIN="$BIN" bash "$ROOT/scripts/package-deb.sh" "$work/btest")
echo "== $(basename "$deb") ($(stat -c %s "$deb") bytes, built in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"

echo "== control fields, conffiles, scripts, files"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = btest ] && ok "Package: btest" || bad "Package: $(field Package)"
want_version="$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' "$ROOT/Cargo.toml")-1"
[ "$(field Version)" = "$want_version" ] && ok "Version: $want_version" || bad "Version: $(field Version), want $want_version"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] && ok "Architecture: $(field Architecture)" || bad "Architecture: $(field Architecture)"
for f in Maintainer Installed-Size Section Description; do
  [ -n "$(field "$f")" ] && ok "$f present" || bad "$f missing"
done
if LC_ALL=C readelf -d "$work/btest" | grep -q 'NEEDED.*libc.so.6'; then
  field Depends | grep -qE '(^|, )libc6 \(>= 2\.[0-9]+\)' && ok "Depends: $(field Depends)" || bad "Depends: '$(field Depends)'"
fi
dpkg-deb -e "$deb" "$work/ctl"
[ "$(cat "$work/ctl/conffiles")" = /etc/default/btest ] && ok "conffiles: /etc/default/btest" || bad "conffiles: $(cat "$work/ctl/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$work/ctl/$s" ] && sh -n "$work/ctl/$s" && ok "$s executable, sh -n clean" || bad "$s"
done
! grep -qE '^[[:space:]]*systemctl (enable|start|restart)' "$work/ctl/postinst" &&
  ok "postinst does not enable or start the server" || bad "postinst enables or starts the server"
dpkg-deb -c "$deb" >"$work/list"
for f in ./usr/bin/btest ./usr/share/man/man1/btest.1.gz ./usr/lib/systemd/system/btest.service \
  ./etc/default/btest ./usr/share/bash-completion/completions/btest \
  ./usr/share/zsh/vendor-completions/_btest ./usr/share/fish/vendor_completions.d/btest.fish \
  ./usr/share/doc/btest/copyright; do
  grep -qE " $f\$" "$work/list" && ok "has $f" || bad "no $f in the package"
done
grep -E ' \./etc/default/btest$' "$work/list" | grep -q '^-rw------- root/root' &&
  ok "/etc/default/btest: -rw------- root/root" || bad "/etc/default/btest: $(grep 'etc/default/btest' "$work/list")"
grep -E ' \./usr/bin/btest$' "$work/list" | grep -q '^-rwxr-xr-x root/root' && ok "/usr/bin/btest: -rwxr-xr-x root/root" || bad "/usr/bin/btest mode"
dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/lib/systemd/system/btest.service >"$work/unit"
# shellcheck disable=SC2016 # the unit's literal text
for l in 'ExecStart=/usr/bin/btest server $BTEST_OPTS' 'EnvironmentFile=-/etc/default/btest' \
  'LimitNOFILE=65536' 'TasksMax=8192'; do
  grep -qxF "$l" "$work/unit" && ok "unit: $l" || bad "unit lacks: $l"
done

echo "== dpkg -i"
installed=1
# Without the man page: unpacking one activates man-db's trigger, whose mandb rescans
# /usr/share/man/man1 (28 s on this machine under load, 2026-12-07; 0.6 s when nothing
# changed). The archive listing above checked the page is in the package.
NOMAN='--path-exclude=/usr/share/man/*'
dpkg_retry -i "$NOMAN" "$deb" && ok "installed (dpkg $NOMAN)" || bad "dpkg -i failed"
dpkg-query -W -f '${Status}' btest | grep -q 'install ok installed' && ok "dpkg: install ok installed" || bad "dpkg status: $(dpkg-query -W -f '${Status}' btest)"
v=$(/usr/bin/btest --version 2>&1) && [ "$v" = "btest ${want_version%-1}" ] && ok "/usr/bin/btest --version: $v" || bad "/usr/bin/btest --version: $v"
[ "$(stat -c %a /etc/default/btest)" = 600 ] && ok "/etc/default/btest mode 600" || bad "/etc/default/btest mode $(stat -c %a /etc/default/btest)"

echo "== loopback test with the installed binary (TCP, both directions, 1 s)"
PORT=$(free_port 2930)
/usr/bin/btest server --listen "127.0.0.1:$PORT" --udp-port-from $((PORT + 1)) >"$work/server.log" 2>&1 &
SRV=$!
if wait_listening "$PORT"; then
  if /usr/bin/btest client "127.0.0.1:$PORT" --direction both --duration 1s --json >"$work/client.out" 2>"$work/client.err"; then
    sum=$(grep '"type":"summary"' "$work/client.out" || true)
    tx=$(sed -n 's/.*"tx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    rx=$(sed -n 's/.*"rx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    [ "${tx:-0}" -gt 0 ] && [ "${rx:-0}" -gt 0 ] && ok "client: tx $tx B, rx $rx B" || bad "client summary: $sum"
  else
    bad "the client failed: $(tail -n 3 "$work/client.err")"
  fi
else
  bad "the installed server did not listen: $(tail -n 3 "$work/server.log")"
fi
kill "$SRV" 2>/dev/null || true
wait "$SRV" 2>/dev/null || true
SRV=""

echo "== a changed /etc/default/btest survives a reinstall"
echo 'BTEST_OPTS="--max-sessions 7"  # test-deb.sh' >>/etc/default/btest
dpkg_retry -i "$NOMAN" "$deb" && ok "reinstalled (prerm upgrade, postinst configure OLD)" || bad "reinstall failed"
grep -q 'test-deb.sh' /etc/default/btest && ok "the change is kept" || bad "the change was overwritten"

echo "== dpkg --purge"
fails_before=$fails
mkdir -p /var/lib/btest && echo state >/var/lib/btest/usage
dpkg_retry --purge btest && ok "purged" || bad "dpkg --purge failed"
installed=0
dpkg-query -W -f '${Status}' btest 2>/dev/null | grep -q installed && bad "dpkg still lists btest" || ok "dpkg lists no btest"
for p in "${PATHS[@]}" /usr/share/zsh/vendor-completions/_btest /usr/share/doc/btest; do
  [ ! -e "$p" ] && [ ! -L "$p" ] || bad "$p left after purge"
done
[ "$fails" = "$fails_before" ] && ok "nothing of the package or its state left"

if [ "$fails" -gt 0 ]; then
  say "$fails check(s) failed"
  exit 1
fi
say "passed"
