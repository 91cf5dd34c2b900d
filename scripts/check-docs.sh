#!/usr/bin/env bash
# `make check-docs`: every long option that `btest --help`, `btest client --help`,
# `btest server --help`, `btest fleet --help`, `btest through --help`, `btest speed-test --help` and `btest exporter --help` print must appear in the man page docs/btest.1 and in README.md.
# Prints the missing ones per file and exits 1 if there are any.
# usage: scripts/check-docs.sh [BINARY]   (default: the current sources, via `cargo run`)
set -euo pipefail
SCRIPT=check-docs
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
if [ "$#" -gt 0 ]; then
  run() { "$1" "${@:2}"; }
  BIN=$(realpath "$1")
else
  run() { (cd "$ROOT" && "${CARGO:-cargo}" run -q -- "${@:2}"); }
  BIN=cargo
fi
# Each help lists its own options: the overview the common ones, each role its own.
help=
for args in "--help" "client --help" "server --help" "fleet --help" "through --help" "speed-test --help" "exporter --help"; do
  # shellcheck disable=SC2086 # word splitting wanted
  text=$(run "$BIN" $args) || die "btest $args failed"
  [ -n "$text" ] || die "btest $args printed nothing"
  help+="$text"$'\n'
done
cd "$ROOT"
mapfile -t opts < <(grep -oE -- '(^|[^[:alnum:]-])--[[:alnum:]][[:alnum:]-]*' <<<"$help" |
  sed 's/^[^-]*//' | sort -u)
[ "${#opts[@]}" -gt 0 ] || die "no long options found in --help"

# The man page in plain text: roff escapes for hyphens and fonts removed.
man_text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\e/\\/g' docs/btest.1)
readme_text=$(cat README.md 2>/dev/null || true)
[ -n "$readme_text" ] || say "warning: README.md is missing or empty"

missing=0
check() { # NAME TEXT
  local name=$1 text=$2 absent=()
  for o in "${opts[@]}"; do
    grep -qE -- "(^|[^[:alnum:]-])${o}([^[:alnum:]-]|\$)" <<<"$text" || absent+=("$o")
  done
  if [ "${#absent[@]}" -eq 0 ]; then
    echo "$name: all ${#opts[@]} long options present"
  else
    echo "$name: missing ${absent[*]}"
    missing=1
  fi
}
check docs/btest.1 "$man_text"
check README.md "$readme_text"
exit "$missing"
