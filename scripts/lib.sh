# shellcheck shell=bash
# Helpers shared by the packaging scripts (build-musl, check-static, size, cross-test, rss).
# Sourced, never run. Callers set `set -euo pipefail` and SCRIPT (their name for messages).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# Every static build is copied here under its own name: btest-TRIPLE, btest-ROLE-TRIPLE.
# shellcheck disable=SC2034 # used by the scripts that source this file
DIST=$TARGET_DIR/dist
read -r -a MUSL_TARGETS <<<"${MUSL_TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl}"
MIB=1048576
# The one hard size limit: 1.0 MiB for the full binary (both roles), on every musl target.
# Role-only builds have no budget (the 0.7 MiB one was withdrawn, issue 8): they are measured and
# reported, never failed.
FULL_BUDGET=$MIB

say() { printf '%s: %s\n' "${SCRIPT:-script}" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# A process's resident set (KiB) and thread count, from /proc/PID/status (rss.sh, soak.sh).
proc_rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
proc_threads() { sed -n 's/^Threads:[[:space:]]*//p' "/proc/$1/status"; }

# bytes -> "0.927 MiB"
mib() { awk -v b="$1" 'BEGIN { printf "%.3f MiB", b / 1048576 }'; }

# Adds a rustup target when it is missing.
need_target() {
  if ! rustup target list --installed | grep -x "$1" >/dev/null; then
    say "installing rustup target $1"
    rustup target add "$1"
  fi
}

# Adds a rustup component (rust-src for build-std) when it is missing.
need_component() {
  if ! rustup component list --installed | grep -x "$1" >/dev/null; then
    say "installing rustup component $1"
    rustup component add "$1" || die "could not add the rustup component $1: set MUSL_BUILD_STD=0 to build with the prebuilt std (about 210 KiB larger, over the 1 MiB budget)"
  fi
}

# need_cmd CMD DEBIAN_PACKAGE: installs the package with apt-get when CMD is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    say "$1 not found: installing the Debian package $2"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 is still missing"
  else
    die "$1 not found: install $2 (Debian/Ubuntu: apt-get install $2)"
  fi
}

# True when Cargo.toml's [features] table defines both `server` and `client`.
has_role_features() {
  awk '
    /^[[:space:]]*\[/ { in_features = ($0 ~ /^[[:space:]]*\[features\][[:space:]]*(#.*)?$/) }
    in_features && /^[[:space:]]*server[[:space:]]*=/ { s = 1 }
    in_features && /^[[:space:]]*client[[:space:]]*=/ { c = 1 }
    END { exit !(s && c) }
  ' "$ROOT/Cargo.toml"
}

# True when a file in $DIST is a role-only build, from its name (build-musl.sh's btest-ROLE-TRIPLE).
is_role_build() {
  case "$(basename "$1")" in
    btest-server-* | btest-client-*) return 0 ;;
    *) return 1 ;;
  esac
}

# Budget in bytes for a file in $DIST, from its name; prints nothing for a role-only build,
# which has none, nor for MIPS, whose code is larger (issue 21: its size is reported, and its
# xz -9 size has the budget below like every router image).
budget_for() {
  is_role_build "$1" && return 0
  case "$(basename "$1")" in
    *-mips-* | *-mipsel-*) return 0 ;;
  esac
  echo "$FULL_BUDGET"
}

# The other limit of a router image (issue 21): its `xz -9` size, what it costs in an OpenWrt
# squashfs flash image, at most 450 KB (450,000 bytes) on every architecture. Role-only builds
# have none.
XZ_BUDGET=450000
xz_budget_for() {
  is_role_build "$1" || echo "$XZ_BUDGET"
}

# FILE -> bytes of its `xz -9` compression, or nothing when xz is missing.
xz9_size() {
  command -v xz >/dev/null 2>&1 || return 0
  xz -9 -c "$1" | wc -c | tr -d ' '
}

# Targets that `make cross` builds with cargo-zigbuild (zig's clang and musl): the ones whose
# rustup std (and so its self-contained musl) cannot be had here. x86_64 and aarch64 link with
# the self-contained musl of their rustup std, as before.
uses_zig() {
  case "$1" in
    x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) return 1 ;;
    *) return 0 ;;
  esac
}

# ELF FILE -> the qemu-user binary that runs it (qemu-arm-static ...), or nothing when it is an
# x86_64 file or an unknown architecture. The endianness comes from the ELF header, not the
# name, so a mislabelled image cannot pass under the wrong emulator.
qemu_for() {
  local h machine
  h=$(readelf -h "$1" 2>/dev/null) || return 0
  machine=$(sed -n 's/^ *Machine: *//p' <<<"$h")
  case "$machine" in
    *AArch64*) echo qemu-aarch64-static ;;
    *ARM*) echo qemu-arm-static ;;
    *MIPS*)
      if grep -q 'big endian' <<<"$h"; then echo qemu-mips-static; else echo qemu-mipsel-static; fi
      ;;
  esac
}

# Host triple's architecture, e.g. x86_64.
host_arch() { uname -m; }

# A TCP port that nothing listens on, starting the search at $1.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# Waits (at most 10 s) until 127.0.0.1:$1 accepts a TCP connection.
wait_listening() {
  local _
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
