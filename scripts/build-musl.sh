#!/usr/bin/env bash
# `make musl` (first half): static release builds for each musl target, copied to target/dist/
# as btest-TRIPLE. When Cargo.toml defines the `server` and `client` features, also builds the
# role-only binaries btest-server-TRIPLE and btest-client-TRIPLE (--no-default-features).
# Linking and static CRT are configured in .cargo/config.toml. Checked by check-static.sh.
# Env: MUSL_TARGETS (default "x86_64-unknown-linux-musl aarch64-unknown-linux-musl"; `make cross`
# adds armv7-unknown-linux-musleabihf, mips-unknown-linux-musl, mipsel-unknown-linux-musl, built
# with cargo-zigbuild: see need_zigbuild), CARGO,
# MUSL_ROLES (default "server client" when the features exist; empty: full binaries only),
# MUSL_BUILD_STD (default 1; 0 links the prebuilt std instead, see below).
#
# Why std is rebuilt (MUSL_BUILD_STD=1): the prebuilt std always links its backtrace
# symbolizer (gimli, addr2line, miniz_oxide, rustc-demangle), about 210 KiB of a 1 MiB budget
# that no program of ours ever calls (a panic still prints its message and location; only
# RUST_BACKTRACE's symbol names go). Cargo's build-std, with std's features narrowed to
# `panic-unwind`, leaves it out and keeps unwinding, so a panicked role thread is still an error
# for one session (Cargo.toml, [profile.release]). build-std is a nightly Cargo flag: the stable
# toolchain runs it through RUSTC_BOOTSTRAP=1, as the fuzz build does, and needs the rust-src
# component. Measured on rustc 1.95.0, x86_64-musl full binary: 1,070,016 B with the prebuilt
# std, 850,560 B rebuilt (docs/bench.md).
set -euo pipefail
SCRIPT=build-musl
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
CARGO=${CARGO:-cargo}
cd "$ROOT"
mkdir -p "$DIST"

if [ -n "${MUSL_ROLES+set}" ]; then
  read -r -a ROLES <<<"$MUSL_ROLES"
elif has_role_features; then
  ROLES=(server client)
else
  ROLES=()
  say "Cargo.toml has no [features] with server and client yet: skipping role-only builds"
fi

ROUTER_FEATURES=${ROUTER_FEATURES:-client,server,through,other-port}
if ! has_role_features; then
  ROUTER_FEATURES=
fi
STD_FLAGS=()
if [ "${MUSL_BUILD_STD:-1}" != 0 ]; then
  need_component rust-src
  export RUSTC_BOOTSTRAP=1
  STD_FLAGS=(-Z "build-std=std,panic_unwind" -Z "build-std-features=panic-unwind")
  say "rebuilding std without its backtrace symbolizer (MUSL_BUILD_STD=0 to use the prebuilt one)"
fi

# cargo-zigbuild and zig for the targets uses_zig names (armv7, mips, mipsel): installed from
# crates.io and PyPI when missing. zig brings the C side a Rust std needs on those targets (its
# clang as the linker, musl's crt and libc.a, libunwind); cargo-zigbuild wraps it for cargo and
# picks the zig target with the same float ABI as Rust's (mips-linux-musleabi: soft-float).
need_zigbuild() {
  if ! "$CARGO" zigbuild --help >/dev/null 2>&1; then
    say "cargo-zigbuild not found: installing it from crates.io (a few minutes)"
    "$CARGO" install --locked cargo-zigbuild || die "could not install cargo-zigbuild: build $1 elsewhere, or leave it out of MUSL_TARGETS"
  fi
  if ! command -v zig >/dev/null 2>&1 && ! python3 -m ziglang version >/dev/null 2>&1; then
    say "zig not found: installing the ziglang package from PyPI"
    python3 -m pip install -q ziglang || die "could not install zig (pip install ziglang): build $1 elsewhere, or leave it out of MUSL_TARGETS"
  fi
}

for t in "${MUSL_TARGETS[@]}"; do
  BUILD=("$CARGO" build)
  if uses_zig "$t"; then
    # No rustup std for these here (rustup cannot fetch one; MIPS has none at all: tier 3):
    # std is always rebuilt for them.
    [ "${#STD_FLAGS[@]}" -gt 0 ] || die "$t: MUSL_BUILD_STD=0 needs a prebuilt std, which $t does not have here"
    need_zigbuild "$t"
    BUILD=("$CARGO" zigbuild)
  else
    need_target "$t"
  fi
  # Roles first, the full build last, so target/$t/release/btest is the full binary afterwards.
  for role in "${ROLES[@]}"; do
    say "building $role-only for $t"
    "${BUILD[@]}" --release --target "$t" "${STD_FLAGS[@]}" --no-default-features --features "$role"
    cp "$TARGET_DIR/$t/release/btest" "$DIST/btest-$role-$t"
  done
  # The router image: both roles, the latency probe and its echo, `btest through` and the
  # UDP fallback to the server's other ports (`other-port`). Left out to fit the 1 MiB budget
  # (docs/bench.md): the workstation tools `fleet`, `report`, `tty` (the live graph, wide
  # lines) and `completions`, and the public-server `http` dashboard and `quotas`.
  say "building the full router binary for $t (features $ROUTER_FEATURES)"
  "${BUILD[@]}" --release --target "$t" "${STD_FLAGS[@]}" --no-default-features \
    --features "$ROUTER_FEATURES"
  cp "$TARGET_DIR/$t/release/btest" "$DIST/btest-$t"
done
# Role binaries from an earlier run when the features are gone now would be stale.
if ! has_role_features; then
  rm -f "$DIST"/btest-server-* "$DIST"/btest-client-*
fi
say "done: $(cd "$DIST" && echo btest-*)"
