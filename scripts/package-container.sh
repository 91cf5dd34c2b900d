#!/usr/bin/env bash
# `make container`: the FROM-scratch container image (scripts/container/Containerfile) for
# every platform there is a static musl image of in target/dist/ (make musl, make cross):
# x86_64 -> linux/amd64, aarch64 -> linux/arm64, armv7-musleabihf -> linux/arm/v7 (container
# platforms have no 32-bit MIPS). One image per platform, IMAGE-amd64, IMAGE-arm64,
# IMAGE-armv7, and a manifest list IMAGE over them (default localhost/btest:VERSION);
# with CONTAINER_ARCHIVE=1 it is also saved as an OCI archive in target/dist/pkg/ (what
# `podman load` or a registry push takes). No registry is contacted: FROM scratch pulls nothing.
# usage: scripts/package-container.sh   Env: CONTAINER_TOOL (podman), IMAGE, CONTAINER_IMAGES
#        (directory of btest-TRIPLE images, default target/dist), CONTAINER_PLATFORMS (only
#        these, e.g. "linux/amd64"). Prints IMAGE on stdout.
set -euo pipefail
SCRIPT=package-container
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
TOOL=${CONTAINER_TOOL:-podman}
command -v "$TOOL" >/dev/null || die "$TOOL not found (Debian: apt-get install podman)"
IMAGES=${CONTAINER_IMAGES:-$DIST}
IMAGE=${IMAGE:-localhost/btest:$(pkg_version)}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$ROOT/scripts/container/Containerfile" "$ctx/"
platforms=()
for pair in x86_64-unknown-linux-musl:linux/amd64 aarch64-unknown-linux-musl:linux/arm64 \
  armv7-unknown-linux-musleabihf:linux/arm/v7; do
  triple=${pair%%:*} platform=${pair#*:}
  [ -f "$IMAGES/btest-$triple" ] || continue
  if [ -n "${CONTAINER_PLATFORMS:-}" ] && ! grep -qw -- "$platform" <<<"$CONTAINER_PLATFORMS"; then
    continue
  fi
  # The Containerfile copies TARGETARCH+TARGETVARIANT/btest: amd64, arm64, armv7.
  dir=$(awk -F/ '{ print $2 $3 }' <<<"$platform")
  mkdir -p "$ctx/$dir"
  install -m 0755 "$IMAGES/btest-$triple" "$ctx/$dir/btest"
  platforms+=("$platform")
done
[ "${#platforms[@]}" -gt 0 ] || die "no static images in $IMAGES (make musl builds x86_64 and aarch64)"

# One image per platform, tagged IMAGE-ARCH (localhost/btest:0.1.0-amd64: runs as it is),
# then the manifest list IMAGE over them. A rebuilt list starts empty, or it would keep the
# old images too. (podman 4.3's `build --manifest` left an image its own `run IMAGE` could not
# find: "locating item named manifest-sha256:..."; tags and `manifest add` do not.)
"$TOOL" manifest rm "$IMAGE" >/dev/null 2>&1 || "$TOOL" rmi "$IMAGE" >/dev/null 2>&1 || true
"$TOOL" manifest create "$IMAGE" >/dev/null
for platform in "${platforms[@]}"; do
  tag="$IMAGE-$(awk -F/ '{ print $2 $3 }' <<<"$platform")"
  say "building $tag for $platform"
  "$TOOL" build -q --layers=false --platform "$platform" -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
  "$TOOL" manifest add "$IMAGE" "containers-storage:$tag" >/dev/null
done
if [ "${CONTAINER_ARCHIVE:-0}" = 1 ]; then
  mkdir -p "$PKG_OUT"
  archive="$PKG_OUT/btest-$(pkg_version)-oci.tar"
  rm -f "$archive"
  "$TOOL" manifest push --all "$IMAGE" "oci-archive:$archive" >/dev/null
  say "saved $archive ($(stat -c %s "$archive") bytes)"
fi
say "built $IMAGE for ${platforms[*]}"
echo "$IMAGE"
