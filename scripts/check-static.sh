#!/usr/bin/env bash
# `make musl` (second half): checks every binary in target/dist/ (or the files given as
# arguments): an ELF for the architecture its name says, statically linked (no program
# interpreter, no shared-library dependency), stripped, and for the full binary within the 1.0 MiB
# budget. A server-only or client-only binary has no budget: its size is reported, not checked.
# Runs each binary's --version when the host can execute it (natively, or through qemu-user when
# installed). Exits 1 on any failure.
set -euo pipefail
SCRIPT=check-static
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
need_cmd readelf binutils

if [ "$#" -gt 0 ]; then
  FILES=("$@")
else
  shopt -s nullglob
  FILES=("$DIST"/btest-*)
  shopt -u nullglob
  [ "${#FILES[@]}" -gt 0 ] || die "nothing in $DIST: run 'make musl' first"
fi

fail=0
printf '%-44s %-8s %-7s %10s %10s %10s  %s\n' binary arch linkage bytes MiB budget verdict
for f in "${FILES[@]}"; do
  name=$(basename "$f")
  problems=()
  [ -f "$f" ] || die "$f: no such file"
  machine=$(readelf -h "$f" 2>/dev/null | sed -n 's/^ *Machine: *//p')
  case "$machine" in
    *X86-64*) arch=x86_64 ;;
    *AArch64*) arch=aarch64 ;;
    *ARM*) arch=arm ;;
    *MIPS*) arch=mips ;;
    "") arch=none; problems+=("not an ELF file") ;;
    *) arch=other ;;
  esac
  case "$name" in
    *x86_64-*) [ "$arch" = x86_64 ] || problems+=("name says x86_64, ELF says $machine") ;;
    *aarch64-*) [ "$arch" = aarch64 ] || problems+=("name says aarch64, ELF says $machine") ;;
  esac
  linkage=static
  if readelf -lW "$f" 2>/dev/null | grep 'INTERP' >/dev/null; then
    linkage=dynamic
    problems+=("has a program interpreter: $(readelf -lW "$f" | sed -n 's/.*interpreter: \(.*\)]/\1/p')")
  fi
  needed=$(readelf -dW "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  if [ -n "$needed" ]; then
    linkage=dynamic
    problems+=("needs shared libraries: $needed")
  fi
  if readelf -SW "$f" 2>/dev/null | grep ' \.symtab ' >/dev/null; then
    problems+=("not stripped (the release profile strips)")
  fi
  bytes=$(stat -c %s "$f")
  budget=$(budget_for "$f")
  if [ -n "$budget" ] && [ "$bytes" -gt "$budget" ]; then
    problems+=("$bytes bytes is over the budget of $budget by $((bytes - budget)) bytes")
  fi
  # Does it run? Natively on the same architecture, else through qemu-user when present.
  runner=()
  if [ "$arch" = "$(host_arch)" ]; then
    runner=()
  elif [ "$arch" = aarch64 ] && command -v qemu-aarch64-static >/dev/null 2>&1; then
    runner=(qemu-aarch64-static)
  else
    runner=(skip)
  fi
  if [ "${runner[0]:-}" != skip ] && [ "${#problems[@]}" -eq 0 ]; then
    if ! out=$("${runner[@]}" "$f" --version 2>&1); then
      problems+=("--version failed: $out")
    elif [[ "$out" != btest* ]]; then
      problems+=("--version printed '$out'")
    fi
  fi
  if [ "${#problems[@]}" -eq 0 ]; then
    note=""
    [ -z "$budget" ] && note="no budget, size reported only"
    [ "${runner[0]:-}" = skip ] && note="${note:+$note; }not run here: no $arch runner"
    verdict=ok
    [ -n "$note" ] && verdict="ok ($note)"
  else
    verdict=FAIL
    fail=1
  fi
  budget_mib=-
  [ -n "$budget" ] && budget_mib=$(mib "$budget" | cut -d' ' -f1)
  printf '%-44s %-8s %-7s %10s %10s %10s  %s\n' "$name" "$arch" "$linkage" "$bytes" \
    "$(mib "$bytes" | cut -d' ' -f1)" "$budget_mib" "$verdict"
  for p in "${problems[@]}"; do
    printf '    %s\n' "$p"
  done
done
if [ "$fail" -ne 0 ]; then
  say "FAILED: see above"
  exit 1
fi
say "all ${#FILES[@]} binaries are static; the full ones are within the 1.0 MiB budget"
