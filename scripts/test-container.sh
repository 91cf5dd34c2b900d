#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && ok || bad`: ok and bad only print, they never fail
# The container image (issue 21; run by tests/packages.rs in `make test`, and by
# `make container-test`): builds it with package-container.sh from the static images in
# target/dist/ (every platform there is), checks the manifest list and the image's settings
# (one layer, user 65534, entrypoint /btest), runs `--version` in it and a 1 s loopback test
# against the server in the container, host networking, with CLIENT (a btest that runs here)
# as the client; then removes the container and the image.
# usage: scripts/test-container.sh [CLIENT]   (default target/release/btest)
# Exit: 0 passed, 1 failed, 77 skipped (no podman, no static image of this machine's
# architecture in target/dist: make musl).
set -euo pipefail
SCRIPT=test-container
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
skip() {
  say "skip: $*"
  exit 77
}
TOOL=${CONTAINER_TOOL:-podman}
command -v "$TOOL" >/dev/null || skip "$TOOL not found (Debian: apt-get install podman)"
[ "$(id -u)" -eq 0 ] || skip "rootless $TOOL is not set up by this test; run it as root"
HOST_IMAGE=$DIST/btest-$(host_arch)-unknown-linux-musl
[ -f "$HOST_IMAGE" ] || skip "no $HOST_IMAGE: make musl builds it (a FROM scratch image needs the static binary)"
CLIENT=$(realpath "${1:-$TARGET_DIR/release/btest}")
[ -x "$CLIENT" ] || die "$CLIENT: no such binary"
case "$(host_arch)" in
  x86_64) PLATFORM=linux/amd64 ;;
  aarch64) PLATFORM=linux/arm64 ;;
  *) skip "no container platform mapped for $(host_arch)" ;;
esac
IMAGE=localhost/btest-test:$$
NAME=btest-test-$$
work=$(mktemp -d)
cleanup() {
  "$TOOL" rm -f "$NAME" >/dev/null 2>&1 || true
  "$TOOL" manifest rm "$IMAGE" >/dev/null 2>&1 || true
  "$TOOL" rmi -f "$IMAGE-amd64" "$IMAGE-arm64" "$IMAGE-armv7" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build (every static image in $DIST)"
t0=$(date +%s.%N)
IMAGE=$IMAGE bash "$ROOT/scripts/package-container.sh" >/dev/null || die "package-container.sh failed"
echo "  built in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
"$TOOL" manifest inspect "$IMAGE" >"$work/manifest.json"
for p in amd64 arm64 arm; do
  triple=$(case $p in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; arm) echo armv7-unknown-linux-musleabihf ;; esac)
  if [ -f "$DIST/btest-$triple" ]; then
    grep -q "\"architecture\": \"$p\"" "$work/manifest.json" && ok "manifest lists linux/$p" || bad "manifest lacks linux/$p"
  fi
done
# The platform's own image, as package-container.sh tags it.
img_id="$IMAGE-$(cut -d/ -f2 <<<"$PLATFORM")"
user=$("$TOOL" image inspect --format '{{.Config.User}}' "$img_id" 2>/dev/null || true)
entry=$("$TOOL" image inspect --format '{{json .Config.Entrypoint}}' "$img_id" 2>/dev/null || true)
layers=$("$TOOL" image inspect --format '{{len .RootFS.Layers}}' "$img_id" 2>/dev/null || true)
size=$("$TOOL" image inspect --format '{{.Size}}' "$img_id" 2>/dev/null || true)
[ "$user" = 65534:65534 ] && ok "user 65534:65534" || bad "user '$user'"
[ "$entry" = '["/btest"]' ] && ok "entrypoint /btest" || bad "entrypoint $entry"
[ "$layers" = 1 ] && ok "one layer, $size bytes" || bad "$layers layers"

# How containers run here: the engine's defaults, else runc with the limits this machine
# allows (a sandbox without CAP_SYS_RESOURCE and with hybrid cgroups refuses crun's setrlimit
# and cgroup set-up; measured on the build machine, 2026-12-07).
RUN=("$TOOL" run)
if ! v=$("${RUN[@]}" --rm --network host "$img_id" --version 2>"$work/run.err"); then
  if command -v runc >/dev/null; then
    RUN=("$TOOL" --runtime runc run --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
    v=$("${RUN[@]}" --rm --network host "$img_id" --version 2>"$work/run.err") || true
  fi
fi
if [ -z "${v:-}" ]; then
  skip "$TOOL builds images here but cannot run containers: $(tail -n 1 "$work/run.err")"
fi
[ "$v" = "btest $(pkg_version)" ] && ok "run: $v" || bad "run --version: '$v'"

echo "== server in the container (host network), client on the host: TCP both ways, 1 s"
PORT=$(free_port 2960)
"${RUN[@]}" -d --name "$NAME" --network host "$img_id" server --listen "127.0.0.1:$PORT" \
  --udp-port-from $((PORT + 1)) >/dev/null
if wait_listening "$PORT"; then
  if "$CLIENT" client "127.0.0.1:$PORT" --direction both --duration 1s --json >"$work/client.out" 2>"$work/client.err"; then
    sum=$(grep '"type":"summary"' "$work/client.out" || true)
    tx=$(sed -n 's/.*"tx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    rx=$(sed -n 's/.*"rx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    [ "${tx:-0}" -gt 0 ] && [ "${rx:-0}" -gt 0 ] && ok "TCP: tx $tx B, rx $rx B" || bad "summary: $sum"
  else
    bad "client failed: $(tail -n 2 "$work/client.err")"
  fi
  if "$CLIENT" client "127.0.0.1:$PORT" --protocol udp --direction both --local-tx-speed 20M \
    --remote-tx-speed 20M --duration 1s --json >"$work/client.out" 2>"$work/client.err"; then
    sum=$(grep '"type":"summary"' "$work/client.out" || true)
    tx=$(sed -n 's/.*"tx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    rx=$(sed -n 's/.*"rx_bytes":\([0-9]*\).*/\1/p' <<<"$sum" | head -n 1)
    [ "${tx:-0}" -gt 0 ] && [ "${rx:-0}" -gt 0 ] && ok "UDP 20M: tx $tx B, rx $rx B" || bad "UDP summary: $sum"
  else
    bad "UDP client failed: $(tail -n 2 "$work/client.err")"
  fi
else
  bad "the server in the container did not listen: $("$TOOL" logs "$NAME" 2>&1 | tail -n 3)"
fi
"$TOOL" stop -t 2 "$NAME" >/dev/null 2>&1 || true
state=$("$TOOL" inspect --format '{{.State.ExitCode}}' "$NAME" 2>/dev/null || echo gone)
ok "server container stopped (exit $state)"

if [ "$fails" -gt 0 ]; then
  say "$fails check(s) failed"
  exit 1
fi
say "passed"
