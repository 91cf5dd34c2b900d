#!/usr/bin/env bash
# `make windows` (issue 21): the x86_64 Windows build, cross-compiled with mingw-w64, into
# target/dist/btest-x86_64-pc-windows-gnu.exe. Installs the rustup target and Debian's
# gcc-mingw-w64-x86-64 (the linker) when missing. Every feature of the default build: a
# Windows laptop is a workstation, not a router.
set -euo pipefail
SCRIPT=windows
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
CARGO=${CARGO:-cargo}
T=x86_64-pc-windows-gnu
need_target "$T"
need_cmd x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
$CARGO build --release --target "$T"
mkdir -p "$DIST"
cp "$TARGET_DIR/$T/release/btest.exe" "$DIST/btest-$T.exe"
bytes=$(stat -c %s "$DIST/btest-$T.exe")
echo "$DIST/btest-$T.exe: $bytes bytes ($(mib "$bytes"))"
