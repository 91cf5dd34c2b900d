#!/usr/bin/env bash
# `make musl` (first half): static release builds for each musl target, copied to target/dist/
# as btest-TRIPLE. When Cargo.toml defines the `server` and `client` features, also builds the
# role-only binaries btest-server-TRIPLE and btest-client-TRIPLE (--no-default-features).
# Linking and static CRT are configured in .cargo/config.toml. Checked by check-static.sh.
# Env: MUSL_TARGETS (default "x86_64-unknown-linux-musl aarch64-unknown-linux-musl"), CARGO,
# MUSL_ROLES (default "server client" when the features exist; empty: full binaries only).
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

for t in "${MUSL_TARGETS[@]}"; do
  need_target "$t"
  # Roles first, the full build last, so target/$t/release/btest is the full binary afterwards.
  for role in "${ROLES[@]}"; do
    say "building $role-only for $t"
    "$CARGO" build --release --target "$t" --no-default-features --features "$role"
    cp "$TARGET_DIR/$t/release/btest" "$DIST/btest-$role-$t"
  done
  say "building the full binary for $t"
  "$CARGO" build --release --target "$t"
  cp "$TARGET_DIR/$t/release/btest" "$DIST/btest-$t"
done
# Role binaries from an earlier run when the features are gone now would be stale.
if ! has_role_features; then
  rm -f "$DIST"/btest-server-* "$DIST"/btest-client-*
fi
say "done: $(cd "$DIST" && echo btest-*)"
