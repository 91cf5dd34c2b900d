# shellcheck shell=bash
# Helpers shared by the package builders (package-deb.sh, package-ipk.sh, package-container.sh,
# dist.sh) and their tests (test-*.sh). Sourced after lib.sh, never run.

# Every package and tarball goes here, not in $DIST itself: size.sh and check-static.sh take
# every btest-* file in $DIST for an image.
# shellcheck disable=SC2034 # used by the scripts that source this file
PKG_OUT=${PKG_OUT:-$DIST/pkg}

# The version from Cargo.toml's [package] table (the binary's --version prints the same).
pkg_version() {
  awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' "$ROOT/Cargo.toml"
}

# Reproducible timestamps: the last commit's time (SOURCE_DATE_EPOCH wins when set).
pkg_epoch() {
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    echo "$SOURCE_DATE_EPOCH"
  else
    git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s
  fi
}

# A btest that runs on this machine, for what the packaged binary cannot print itself (shell
# completions: the router images leave the `completions` feature out, and a cross image does
# not run here). Tries $1, then COMPLETIONS_BIN, the release and the debug build.
completions_bin() {
  local b
  for b in "${1:-}" "${COMPLETIONS_BIN:-}" "$TARGET_DIR/release/btest" "$TARGET_DIR/debug/btest"; do
    if [ -z "$b" ] || [ ! -x "$b" ]; then continue; fi
    if "$b" completions bash >/dev/null 2>&1; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

# write_completions BINARY DIR: bash, zsh and fish completion files in DIR under the names
# each shell looks for.
write_completions() {
  mkdir -p "$2"
  "$1" completions bash >"$2/btest.bash"
  "$1" completions zsh >"$2/_btest"
  "$1" completions fish >"$2/btest.fish"
}

# tar_reproducible DIR OUTPUT.tar.gz [PATHS...]: root-owned, sorted, dated pkg_epoch, gzip -n at
# level PKG_GZIP (default 9; the tests use 1).
tar_reproducible() {
  local dir=$1 out=$2
  shift 2
  [ "$#" -gt 0 ] || set -- .
  tar -C "$dir" --format=gnu --owner=0 --group=0 --numeric-owner --sort=name \
    --mtime="@$(pkg_epoch)" -cf - "$@" | gzip -n -"${PKG_GZIP:-9}" >"$out"
}

# The OpenWrt package architectures a Rust musl target runs on. Every one of a line shares the
# target's baseline: aarch64 is one ISA; armv7-musleabihf needs VFPv3-D16 (not the FPU-less
# arm_cortex-a9 of bcm53xx, nor armv5/armv6); mips(el)-unknown-linux-musl is MIPS32r2
# soft-float as OpenWrt builds it (24Kc, 74Kc, 4KEc; not the MIPS32r1 mips(el)_mips32).
openwrt_archs() {
  case "$1" in
    x86_64-unknown-linux-musl) echo x86_64 ;;
    aarch64-unknown-linux-musl) echo aarch64_generic aarch64_cortex-a53 aarch64_cortex-a72 aarch64_cortex-a76 ;;
    armv7-unknown-linux-musleabihf)
      echo arm_cortex-a7_neon-vfpv4 arm_cortex-a7_vfpv4 arm_cortex-a9_vfpv3-d16 arm_cortex-a9_neon \
        arm_cortex-a15_neon-vfpv4 arm_cortex-a5_vfpv4 arm_cortex-a8_vfpv3
      ;;
    mips-unknown-linux-musl) echo mips_24kc mips_4kec ;;
    mipsel-unknown-linux-musl) echo mipsel_24kc mipsel_74kc ;;
    *) return 1 ;;
  esac
}

# image_package FILE: "NAME TRIPLE SERVICE(0|1)" for a static image named as make musl / make
# cross name them (btest-TRIPLE, btest-server-TRIPLE, btest-client-TRIPLE); nothing (status 1)
# for anything else in the directory (a .exe, a compressed copy).
image_package() {
  local base
  base=$(basename "$1")
  case "$base" in
    *.*) return 1 ;;
    btest-server-*) echo "btest-server ${base#btest-server-} 1" ;;
    btest-client-*) echo "btest-client ${base#btest-client-} 0" ;;
    btest-*) echo "btest ${base#btest-} 1" ;;
    *) return 1 ;;
  esac
}

# The package tests' tally: `check && ok WHAT || bad WHAT` (ok and bad only print, so the
# `||` never runs after an ok); a test ends failed when `fails` is above 0.
fails=0
ok() { printf '  ok    %s\n' "$*"; }
bad() {
  printf '  FAIL  %s\n' "$*"
  fails=$((fails + 1))
}
