#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && ok || bad`: ok and bad only print, they never fail
# `make dist`, checked (issue 21; run by tests/packages.rs in `make test`): dist.sh on BINARY as
# the native build and copies of it under musl image names (one role-only build, which must
# be left out), into a scratch directory; then each tarball's file list and modes, the
# completions, and `sha256sum -c SHA256SUMS`.
# usage: scripts/test-dist.sh [BINARY]   (default target/release/btest). Exit 0 passed, 1 failed.
set -euo pipefail
SCRIPT=test-dist
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
BIN=$(realpath "${1:-$TARGET_DIR/release/btest}")
[ -x "$BIN" ] || die "$BIN: no such binary"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/images" "$work/out"
# Stand-ins (never run): the tarballs' layout is the point, not the binary.
printf '#!/bin/sh\nexit 1\n' >"$work/native"
chmod 755 "$work/native"
export PKG_GZIP=${PKG_GZIP:-1}
for n in btest-x86_64-unknown-linux-musl btest-aarch64-unknown-linux-musl btest-server-x86_64-unknown-linux-musl; do
  cp "$work/native" "$work/images/$n"
done
DIST_IMAGES="$work/images" DIST_NATIVE="$work/native" DIST_OUT="$work/out" COMPLETIONS_BIN="$BIN" \
  bash "$ROOT/scripts/dist.sh" >"$work/built"
V=$(pkg_version)
host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
for t in "$host" x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  tb="$work/out/btest-$V-$t.tar.gz"
  if [ ! -f "$tb" ]; then
    bad "no $(basename "$tb")"
    continue
  fi
  tar -tvzf "$tb" | awk '{ print $1, $2, $6 }' >"$work/list"
  for f in "btest-$V-$t/btest" "btest-$V-$t/README.md" "btest-$V-$t/btest.1" \
    "btest-$V-$t/completions/btest.bash" "btest-$V-$t/completions/_btest" "btest-$V-$t/completions/btest.fish"; do
    grep -q " $f\$" "$work/list" || bad "$(basename "$tb") lacks $f"
  done
  grep -qxF -- "-rwxr-xr-x 0/0 btest-$V-$t/btest" "$work/list" || bad "$(basename "$tb"): btest not 755 root"
  ok "$(basename "$tb"): btest, README.md, btest.1, 3 completions"
done
grep -q 'btest-server' "$work/built" && bad "a tarball of a role-only build" || ok "role-only builds left out"
tar -xzOf "$work/out/btest-$V-$host.tar.gz" "btest-$V-$host/completions/btest.bash" | bash -n &&
  ok "bash completion: bash -n clean" || bad "bash completion does not parse"
(cd "$work/out" && sha256sum -c --quiet SHA256SUMS) && ok "sha256sum -c SHA256SUMS: $(wc -l <"$work/out/SHA256SUMS") files" || bad "SHA256SUMS does not check"
# Reproducible: a second run gives the same bytes.
cp "$work/out/SHA256SUMS" "$work/sums1"
DIST_IMAGES="$work/images" DIST_NATIVE="$work/native" DIST_OUT="$work/out" COMPLETIONS_BIN="$BIN" \
  bash "$ROOT/scripts/dist.sh" >/dev/null 2>&1
cmp -s "$work/sums1" "$work/out/SHA256SUMS" && ok "a second run gives the same tarballs" || bad "tarballs differ between runs"
if [ "$fails" -gt 0 ]; then
  say "$fails check(s) failed"
  exit 1
fi
say "passed"
