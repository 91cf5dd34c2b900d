#!/usr/bin/env bash
# `make size`: the stripped size of every release build there is: the native one
# (target/release/btest) and each static build in target/dist/ (`make musl`), with its budget.
# Builds nothing; a missing build is reported as such. A binary that is not stripped is measured
# on a stripped copy (rust-objcopy from rustup, which reads every architecture).
set -euo pipefail
SCRIPT=size
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
objcopy=""
if command -v rustc >/dev/null 2>&1; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  cand="$(rustc --print sysroot)/lib/rustlib/$host/bin/rust-objcopy"
  [ -x "$cand" ] && objcopy=$cand
fi

# stripped_size FILE -> bytes
stripped_size() {
  if command -v readelf >/dev/null 2>&1 && readelf -SW "$1" 2>/dev/null | grep ' \.symtab ' >/dev/null; then
    if [ -n "$objcopy" ]; then
      "$objcopy" --strip-all "$1" "$tmp/s" && stat -c %s "$tmp/s" && return 0
    fi
    say "warning: $1 is not stripped and rust-objcopy is missing: printing its file size"
  fi
  stat -c %s "$1"
}

printf '%-44s %10s %10s %10s\n' build bytes MiB budget
row() { # name file budget
  if [ -f "$2" ]; then
    local b
    b=$(stripped_size "$2")
    printf '%-44s %10s %10s %10s\n' "$1" "$b" "$(mib "$b" | cut -d' ' -f1)" "$3"
  else
    printf '%-44s %10s\n' "$1" "not built"
  fi
}
row "native ($(uname -m), release)" "$TARGET_DIR/release/btest" -
shopt -s nullglob
dist=("$DIST"/btest-*)
if [ "${#dist[@]}" -eq 0 ]; then
  printf '%-44s %10s\n' "musl builds" "not built (make musl)"
fi
for f in "${dist[@]}"; do
  row "$(basename "$f")" "$f" "$(mib "$(budget_for "$f")" | cut -d' ' -f1)"
done
if ! has_role_features; then
  echo "(role-only builds: Cargo.toml has no [features] server/client yet)"
fi
