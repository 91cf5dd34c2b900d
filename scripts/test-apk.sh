#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && ok || bad`: ok and bad only print, they never fail
# The OpenWrt 25.12 .apk (issue 21; run by tests/packages.rs when apk-tools v3 is here, and by
# itself): package-apk.sh on BINARY under the x86_64 image name, then with apk itself: the
# package's info (name, version, arch, license), an install into an empty root
# (--initdb --allow-untrusted; the post-install script runs and finds no OpenWrt
# /lib/functions.sh, as on a build host), the binary runs, modes, the /lib/apk/packages lists;
# an upgrade to -r2 keeps a changed /etc/config/btest (the new one lands as .apk-new); removal
# takes the binary and leaves the changed config.
# usage: scripts/test-apk.sh [BINARY]   Env: APK (apk-tools v3). Exit 77 without apk v3.
set -euo pipefail
SCRIPT=test-apk
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
APK=${APK:-$(command -v apk || true)}
if [ -z "$APK" ] || ! "$APK" --version 2>/dev/null | grep -q '^apk-tools 3\.'; then
  say "skip: no apk-tools v3 (APK=${APK:-unset}; Debian 12 has none: build it, docs/reliability.md)"
  exit 77
fi
export APK
BIN=$(realpath "${1:-$TARGET_DIR/release/btest}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/images"
cp "$BIN" "$work/images/btest-x86_64-unknown-linux-musl"
strip "$work/images/btest-x86_64-unknown-linux-musl" 2>/dev/null || true
V="$(pkg_version)"
APK_IMAGES="$work/images" APK_OUT="$work/out" bash "$ROOT/scripts/package-apk.sh" >/dev/null
APK_IMAGES="$work/images" APK_OUT="$work/out2" IPK_RELEASE=2 bash "$ROOT/scripts/package-apk.sh" >/dev/null
pkg=$work/out/x86_64/btest-$V-r1.apk
[ -f "$pkg" ] && ok "x86_64/btest-$V-r1.apk" || die "no $pkg"
"$APK" adbdump "$pkg" >"$work/dump"
for l in "name: btest" "version: $V-r1" "arch: x86_64" "license: MIT OR Apache-2.0"; do
  grep -qF "  $l" "$work/dump" && ok "info $l" || bad "info lacks '$l'"
done
R=$work/root
mkdir "$R"
A=("$APK" --root "$R" --no-network --arch x86_64 --force-no-chroot)
"${A[@]}" add --initdb --allow-untrusted "$pkg" >"$work/add.log" 2>&1 && ok "apk add (empty root)" || bad "apk add: $(tail -n 3 "$work/add.log")"
"$R/usr/bin/btest" --version >/dev/null 2>&1 && ok "installed binary runs: $("$R/usr/bin/btest" --version)" || bad "installed binary does not run"
[ "$(stat -c %a "$R/etc/config/btest")" = 600 ] && ok "/etc/config/btest 600" || bad "/etc/config/btest mode $(stat -c %a "$R/etc/config/btest")"
[ "$(stat -c %a "$R/etc/init.d/btest")" = 755 ] && ok "/etc/init.d/btest 755" || bad "init mode"
[ "$(cat "$R/lib/apk/packages/btest.conffiles")" = /etc/config/btest ] && ok "btest.conffiles" || bad "btest.conffiles"
grep -q '^/usr/bin/btest$' "$R/lib/apk/packages/btest.list" && ok "btest.list" || bad "btest.list"
echo "# changed by test-apk.sh" >>"$R/etc/config/btest"
"${A[@]}" add --allow-untrusted "$work/out2/x86_64/btest-$V-r2.apk" >"$work/up.log" 2>&1 && ok "apk add -r2 (upgrade)" || bad "upgrade: $(tail -n 3 "$work/up.log")"
grep -q 'test-apk.sh' "$R/etc/config/btest" && [ -f "$R/etc/config/btest.apk-new" ] && ok "changed config kept, new one as btest.apk-new" || bad "changed config not kept"
"${A[@]}" del btest >"$work/del.log" 2>&1 && ok "apk del" || bad "apk del: $(tail -n 3 "$work/del.log")"
[ ! -e "$R/usr/bin/btest" ] && ok "binary removed" || bad "binary left"
grep -q 'test-apk.sh' "$R/etc/config/btest" 2>/dev/null && ok "changed config left in place" || bad "changed config removed"
if [ "$fails" -gt 0 ]; then
  say "$fails check(s) failed"
  exit 1
fi
say "passed"
