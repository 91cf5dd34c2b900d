#!/usr/bin/env bash
# `make size`: the stripped size of every release build there is: the native one
# (target/release/btest) and each static build in target/dist/ (`make musl`), with its budget
# (1.0 MiB for a full binary; a role-only one has none, "-") and its `xz -9` size, which is what
# it costs in an OpenWrt squashfs image. Reports only: checking the budget is check-static.sh's job.
# Builds nothing; a missing build is reported as such. A binary that is not stripped is measured
# on a stripped copy (rust-objcopy from rustup, which reads every architecture).
set -euo pipefail
SCRIPT=size
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
objcopy=()
if command -v rustc >/dev/null 2>&1; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  sysroot=$(rustc --print sysroot)
  cand="$sysroot/lib/rustlib/$host/bin/rust-objcopy"
  # Its RUNPATH ($ORIGIN/../lib) finds libLLVM only when the llvm-tools component is installed;
  # without it the libLLVM the rustc component ships is in $sysroot/lib, so the loader looks there too.
  [ -x "$cand" ] && objcopy=(env "LD_LIBRARY_PATH=$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$cand")
fi

# stripped FILE -> the path of its stripped bytes: FILE itself when it has no symbol table, else
# a stripped copy in $tmp. Both columns are measured on it, so the xz figure is not inflated by
# symbols that an image would never carry.
stripped() {
  if command -v readelf >/dev/null 2>&1 && readelf -SW "$1" 2>/dev/null | grep ' \.symtab ' >/dev/null; then
    if [ "${#objcopy[@]}" -gt 0 ] && "${objcopy[@]}" --strip-all "$1" "$tmp/s"; then
      echo "$tmp/s"
      return 0
    fi
    say "warning: $1 is not stripped and rust-objcopy is missing or failed: measuring it as it is"
  fi
  echo "$1"
}

# xz_size FILE -> bytes of `xz -9` output: about what the file costs in an OpenWrt squashfs
# (xz-compressed). Prints "no xz" when xz is not installed; a size report should not fail on it.
xz_size() {
  if command -v xz >/dev/null 2>&1; then
    xz -9 -c "$1" | wc -c | tr -d ' '
  else
    echo "no xz"
  fi
}

printf '%-44s %10s %10s %10s %10s\n' build bytes MiB budget xz-9
row() { # name file budget
  if [ -f "$2" ]; then
    local s b
    s=$(stripped "$2")
    b=$(stat -c %s "$s")
    printf '%-44s %10s %10s %10s %10s\n' "$1" "$b" "$(mib "$b" | cut -d' ' -f1)" "$3" "$(xz_size "$s")"
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
  budget=$(budget_for "$f")
  if [ -n "$budget" ]; then
    row "$(basename "$f")" "$f" "$(mib "$budget" | cut -d' ' -f1)"
  else
    row "$(basename "$f")" "$f" -
  fi
done
if ! has_role_features; then
  echo "(role-only builds: Cargo.toml has no [features] server/client yet)"
fi
