#!/usr/bin/env bash
# `make fuzz-smoke`: builds the cargo-fuzz targets in fuzz/ and runs each one for a few seconds
# on its corpus (fuzz/corpus/TARGET); fails if any target crashes or fails an assertion.
# Prints the executions per target. docs/fuzzing.md has the targets, the long runs and why the
# sanitizer is off by default.
#
# usage: scripts/fuzz-smoke.sh [TARGET...]          (default: every target in fuzz/)
# env:   FUZZ_SECONDS (default 5) per target, FUZZ_SANITIZER (default none; address works too)
#
# The stable toolchain runs cargo-fuzz through RUSTC_BOOTSTRAP=1 (it needs -Z flags). New inputs
# found go to a temporary directory, not to the corpus in the repository; a crash is saved in
# fuzz/artifacts/TARGET/ (ignored by git) and reproduced with `cargo fuzz run TARGET FILE`.
set -euo pipefail
SCRIPT=fuzz-smoke
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

CARGO=${CARGO:-cargo}
SECONDS_EACH=${FUZZ_SECONDS:-5}
SANITIZER=${FUZZ_SANITIZER:-none}
FUZZ_DIR=$ROOT/fuzz
export RUSTC_BOOTSTRAP=1

if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked)"
  "$CARGO" install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("$CARGO" fuzz list --fuzz-dir "$FUZZ_DIR")
fi
[ "${#targets[@]}" -gt 0 ] || die "no fuzz targets in $FUZZ_DIR"

say "building ${#targets[@]} targets (sanitizer: $SANITIZER)"
"$CARGO" fuzz build --fuzz-dir "$FUZZ_DIR" -s "$SANITIZER"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
total_start=$(date +%s)
printf '%-16s %12s %8s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$FUZZ_DIR/corpus/$t"
  log=$work/$t.log
  # The first corpus directory receives new inputs: the temporary one. The run happens in the
  # temporary directory so that nothing libFuzzer writes lands in the work tree.
  if (cd "$work" && "$CARGO" fuzz run --fuzz-dir "$FUZZ_DIR" -s "$SANITIZER" "$t" \
    "$work/$t" "$FUZZ_DIR/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -print_final_stats=1) >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$result"
  if [ "$result" != ok ]; then
    grep -E "panicked at|assertion|ERROR: libFuzzer|Test unit written" -A4 "$log" | head -n 30 >&2 ||
      tail -n 30 "$log" >&2
  fi
done
say "fuzzing took $(($(date +%s) - total_start)) s"

if [ "${#failed[@]}" -gt 0 ]; then
  die "crashes or failed assertions in: ${failed[*]} (inputs in fuzz/artifacts/)"
fi
say "all ${#targets[@]} targets ran without a crash"
