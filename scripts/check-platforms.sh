#!/usr/bin/env bash
# `make check-platforms` (issue 21): `cargo clippy -D warnings` (which is `cargo check` plus the
# lints) of the library and the binary for the platforms this machine cannot run: Windows (gnu and msvc: check only,
# no linker is needed), macOS (x86_64, aarch64) and FreeBSD (x86_64). Each needs only rustup's
# std for the target, added here when missing (45 s for all five, measured).
# usage: scripts/check-platforms.sh [TRIPLE...]   (default: the five above)
set -euo pipefail
SCRIPT=check-platforms
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
CARGO=${CARGO:-cargo}
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=(x86_64-pc-windows-gnu x86_64-pc-windows-msvc x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)
fi
# The router image's feature set (scripts/build-musl.sh) and the role-only builds compile
# other cfg paths: check them as well on Windows, and the router set on macOS and FreeBSD.
ROUTER=client,server,through,other-port
failed=()
for t in "${TARGETS[@]}"; do
  need_target "$t"
  echo "== $t"
  # clippy runs rustc's own checks first, so it is `cargo check` and the lints in one pass.
  runs=("clippy --lib --bins")
  case "$t" in
    x86_64-pc-windows-gnu)
      runs+=("clippy --lib --bins --no-default-features --features $ROUTER"
        "clippy --lib --bins --no-default-features --features server"
        "clippy --lib --bins --no-default-features --features client") ;;
    x86_64-apple-darwin | x86_64-unknown-freebsd)
      runs+=("clippy --lib --bins --no-default-features --features $ROUTER") ;;
  esac
  for r in "${runs[@]}"; do
    deny=()
    case "$r" in clippy*) deny=(-- -D warnings) ;; esac
    # shellcheck disable=SC2086 # $r is a list of arguments
    if ! $CARGO $r --target "$t" --quiet "${deny[@]}"; then
      failed+=("$t: cargo $r")
    fi
  done
done
if [ "${#failed[@]}" -gt 0 ]; then
  printf '%s: FAILED: %s\n' "$SCRIPT" "${failed[@]}" >&2
  exit 1
fi
echo "== every platform checks and lints clean: ${TARGETS[*]}"
