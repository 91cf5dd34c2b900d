#!/usr/bin/env bash
# `make musl` (second half): checks every binary in target/dist/ (or the files given as
# arguments): an ELF for the architecture its name says, statically linked (no program
# interpreter, no shared-library dependency), stripped, and for the full binary within the 1.0 MiB
# budget (not MIPS: reported only) and within 450,000 bytes after xz -9 (issue 21: a squashfs
# flash image). A server-only or client-only binary has no budget: its size is reported, not
# checked. armv7 must be hard-float, MIPS soft-float and of the endianness its name says.
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
printf '%-44s %-8s %-7s %10s %10s %10s %8s  %s\n' binary arch linkage bytes MiB budget xz-9 verdict
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
  header=$(readelf -h "$f" 2>/dev/null || true)
  endian=little
  grep -q 'big endian' <<<"$header" && endian=big
  case "$name" in
    *x86_64-*) [ "$arch" = x86_64 ] || problems+=("name says x86_64, ELF says $machine") ;;
    *aarch64-*) [ "$arch" = aarch64 ] || problems+=("name says aarch64, ELF says $machine") ;;
    *armv7-*)
      [ "$arch" = arm ] || problems+=("name says armv7, ELF says $machine")
      # musleabihf: floats in VFP registers, as the armv7 OpenWrt targets and Raspbian use.
      grep -q 'hard-float' <<<"$header" || problems+=("name says hard-float (eabihf), the ELF flags do not")
      ;;
    *mipsel-*)
      [ "$arch" = mips ] && [ "$endian" = little ] || problems+=("name says little-endian MIPS, ELF says $machine, $endian endian")
      ;;
    *mips-*)
      [ "$arch" = mips ] && [ "$endian" = big ] || problems+=("name says big-endian MIPS, ELF says $machine, $endian endian")
      ;;
  esac
  # OpenWrt's mips_24kc and mipsel_24kc are soft-float: a hard-float binary would run FPU
  # instructions their kernel emulates, slowly, or mismatch a float argument. (The output is
  # read whole: `readelf | grep -q` under pipefail fails when grep exits first.)
  fp_abi=$(readelf -A "$f" 2>/dev/null | sed -n 's/^ *FP ABI: *//p')
  if [ "$arch" = mips ] && [[ "$fp_abi" != *[Ss]oft* ]]; then
    problems+=("MIPS image is not soft-float (readelf -A, FP ABI: ${fp_abi:-none})")
  fi
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
  xz_budget=$(xz_budget_for "$f")
  xz=$(xz9_size "$f")
  if [ -n "$xz_budget" ] && [ -n "$xz" ] && [ "$xz" -gt "$xz_budget" ]; then
    problems+=("xz -9 gives $xz bytes, over the squashfs budget of $xz_budget by $((xz - xz_budget)) bytes")
  fi
  # Does it run? Natively on the same architecture, else through qemu-user when present.
  runner=()
  qemu=$(qemu_for "$f")
  if [ "$arch" = "$(host_arch)" ]; then
    runner=()
  elif [ -n "$qemu" ] && command -v "$qemu" >/dev/null 2>&1; then
    runner=("$qemu")
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
    [ -z "$budget" ] && note="no size budget, reported only"
    [ "${runner[0]:-}" = skip ] && note="${note:+$note; }not run here: no $arch runner"
    verdict=ok
    [ -n "$note" ] && verdict="ok ($note)"
  else
    verdict=FAIL
    fail=1
  fi
  budget_mib=-
  [ -n "$budget" ] && budget_mib=$(mib "$budget" | cut -d' ' -f1)
  printf '%-44s %-8s %-7s %10s %10s %10s %8s  %s\n' "$name" "$arch" "$linkage" "$bytes" \
    "$(mib "$bytes" | cut -d' ' -f1)" "$budget_mib" "${xz:--}" "$verdict"
  for p in "${problems[@]}"; do
    printf '    %s\n' "$p"
  done
done
if [ "$fail" -ne 0 ]; then
  say "FAILED: see above"
  exit 1
fi
say "all ${#FILES[@]} binaries are static; the full ones are within the 1.0 MiB budget (MIPS: reported only) and xz -9 <= $XZ_BUDGET bytes"
