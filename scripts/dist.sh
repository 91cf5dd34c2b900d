#!/usr/bin/env bash
# `make dist`: one release tarball per target in target/dist/pkg/, and SHA256SUMS over every
# artefact there (tarballs, .deb, .ipk). A tarball btest-VERSION-TRIPLE.tar.gz holds
# btest-VERSION-TRIPLE/ with the binary, README.md, btest.1 and completions/ (btest.bash,
# _btest, btest.fish). Targets: the native release build (target/release/btest, the full
# workstation feature set) under the host's triple, and every full static image in
# target/dist/ (make musl, make cross; role-only builds are left out). A Windows .exe goes
# in a .zip when zip is installed.
# The router images leave out the `completions` feature: their completions come from a btest
# that runs here (COMPLETIONS_BIN, else the release build), whose flag table has the
# workstation's extra flags too (--http, fleet, ...): offered, then refused by a router image.
# usage: scripts/dist.sh   Env: DIST_IMAGES (default target/dist), DIST_NATIVE (default
#        target/release/btest; empty: none), DIST_OUT (default target/dist/pkg).
# Prints the tarballs' paths on stdout.
set -euo pipefail
SCRIPT=dist
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
IMAGES=${DIST_IMAGES:-$DIST}
NATIVE=${DIST_NATIVE-$TARGET_DIR/release/btest}
OUT=${DIST_OUT:-$PKG_OUT}
VERSION=$(pkg_version)
cbin=$(completions_bin "$NATIVE") || die "no btest here prints completions: make release first"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_completions "$cbin" "$work/completions"
mkdir -p "$OUT"

# pack TRIPLE BINARY
pack() {
  local triple=$1 bin=$2 exe=""
  local name="btest-$VERSION-$triple"
  local d="$work/$name"
  case "$bin" in *.exe) exe=.exe ;; esac
  install -d -m 0755 "$d/completions"
  install -m 0755 "$bin" "$d/btest$exe"
  install -m 0644 "$ROOT/README.md" "$d/README.md"
  install -m 0644 "$ROOT/docs/btest.1" "$d/btest.1"
  install -m 0644 "$work/completions/"* "$d/completions/"
  if [ -n "$exe" ] && command -v zip >/dev/null; then
    rm -f "$OUT/$name.zip"
    find "$d" -exec touch -h -d "@$(pkg_epoch)" {} +
    (cd "$work" && zip -qrX "$OUT/$name.zip" "$name")
    echo "$OUT/$name.zip"
  else
    tar_reproducible "$work" "$OUT/$name.tar.gz" "$name"
    echo "$OUT/$name.tar.gz"
  fi
}

n=0
if [ -n "$NATIVE" ] && [ -x "$NATIVE" ]; then
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  [ -n "$host" ] || host="$(host_arch)-unknown-linux-gnu"
  pack "$host" "$NATIVE"
  n=$((n + 1))
fi
shopt -s nullglob
for image in "$IMAGES"/btest-*; do
  [ -f "$image" ] || continue
  is_role_build "$image" && continue
  base=$(basename "$image")
  case "$base" in
    *.exe) ;;
    *.*) continue ;; # not an image (a compressed copy, a log)
  esac
  triple=${base#btest-}
  triple=${triple%.exe}
  pack "$triple" "$image"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || die "nothing to pack: make release, make musl"
# Checksums of every artefact in the directory, in the form `sha256sum -c SHA256SUMS` reads.
(cd "$OUT" && find . -maxdepth 3 -type f \( -name '*.apk' -o -name '*.tar.gz' -o -name '*.zip' -o -name '*.deb' -o -name '*.ipk' -o -name '*-oci.tar' \) \
  | sed 's|^\./||' | LC_ALL=C sort | xargs -r sha256sum >SHA256SUMS)
say "packed $n targets in $OUT; SHA256SUMS lists $(wc -l <"$OUT/SHA256SUMS") files"
