#!/usr/bin/env bash
# shellcheck disable=SC2016 # the hooks are written out unexpanded, for the router's shell
# `make openwrt`: installable OpenWrt packages (.ipk, opkg's format: OpenWrt 23.05 and 24.10)
# from the static musl images in target/dist/ (make musl, make cross), without an OpenWrt
# buildroot. The same contents as the feed package in scripts/openwrt/btest (whose Makefile
# builds from source in a buildroot): btest (the router image, with the procd service
# /etc/init.d/btest and /etc/config/btest as a conffile), btest-server (the server-only image,
# the same service) and btest-client (the client-only image, binary alone), each for every
# OpenWrt architecture its image runs on. A static binary depends on nothing.
# The format is what OpenWrt's scripts/ipkg-build writes: a gzipped tar of ./debian-binary
# ("2.0"), ./data.tar.gz and ./control.tar.gz (control, conffiles, postinst, prerm).
# usage: scripts/package-ipk.sh   Env: IPK_IMAGES (directory of btest[-ROLE]-TRIPLE images,
#        default target/dist), IPK_OUT (default target/dist/pkg/openwrt), IPK_RELEASE (1).
# Prints the paths of the packages on stdout.
set -euo pipefail
SCRIPT=package-ipk
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"

IMAGES=${IPK_IMAGES:-$DIST}
OUT=${IPK_OUT:-$PKG_OUT/openwrt}
FILES=$ROOT/scripts/openwrt/btest/files
# OpenWrt 24.10 writes versions as UPSTREAM-rRELEASE (apk's form); opkg takes it as well.
VERSION="$(pkg_version)-r${IPK_RELEASE:-1}"
MAINTAINER=${IPK_MAINTAINER:-btest maintainers <btest@example.org>}

# build_ipk NAME IMAGE ARCH WITH_SERVICE(0|1) CONFLICTS DESCRIPTION
build_ipk() {
  local name=$1 image=$2 arch=$3 service=$4 conflicts=$5 desc=$6
  local d
  d=$(mktemp -d "$work/ipk.XXXXXX")
  install -d -m 0755 "$d/data/usr/bin" "$d/control"
  install -m 0755 "$image" "$d/data/usr/bin/btest"
  if [ "$service" = 1 ]; then
    install -d -m 0755 "$d/data/etc/init.d" "$d/data/etc/config"
    install -m 0755 "$FILES/btest.init" "$d/data/etc/init.d/btest"
    # 600 as OpenWrt's INSTALL_CONF: it may hold a password.
    install -m 0600 "$FILES/btest.config" "$d/data/etc/config/btest"
    echo /etc/config/btest >"$d/control/conffiles"
    # OpenWrt's own hooks (/lib/functions.sh): default_postinst enables the service and starts
    # it (it runs nothing until a server section is enabled); default_prerm stops and disables.
    for hook in postinst prerm; do
      {
        echo '#!/bin/sh'
        echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
        echo '[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0'
        echo '. "${IPKG_INSTROOT}/lib/functions.sh"'
        echo "default_$hook \"\$0\" \"\$@\""
      } >"$d/control/$hook"
      chmod 0755 "$d/control/$hook"
    done
  fi
  tar_reproducible "$d/data" "$d/data.tar.gz" .
  local size
  size=$(gzip -dc "$d/data.tar.gz" | wc -c)
  {
    echo "Package: $name"
    echo "Version: $VERSION"
    [ -z "$conflicts" ] || echo "Conflicts: $conflicts"
    echo "Source: feeds/packages/net/btest"
    echo "SourceName: $name"
    echo "License: MIT OR Apache-2.0"
    echo "Section: net"
    echo "SourceDateEpoch: $(pkg_epoch)"
    echo "Maintainer: $MAINTAINER"
    echo "Architecture: $arch"
    echo "Installed-Size: $size"
    echo "Description: $desc"
  } >"$d/control/control"
  tar_reproducible "$d/control" "$d/control.tar.gz" .
  echo 2.0 >"$d/debian-binary"
  local ipk="$OUT/${name}_${VERSION}_${arch}.ipk"
  tar_reproducible "$d" "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz
  echo "$ipk"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
built=0
shopt -s nullglob
for image in "$IMAGES"/btest-*; do
  base=$(basename "$image")
  case "$base" in
    btest-server-*) name=btest-server triple=${base#btest-server-} service=1 conflicts="btest, btest-client"
      desc="MikroTik Bandwidth Test (btest) server alone, a procd service set up in /etc/config/btest" ;;
    btest-client-*) name=btest-client triple=${base#btest-client-} service=0 conflicts="btest, btest-server"
      desc="MikroTik Bandwidth Test (btest) client alone" ;;
    *.* | *-windows-* | *-darwin* | *-freebsd*) continue ;;
    *) name=btest triple=${base#btest-} service=1 conflicts="btest-server, btest-client"
      desc="MikroTik Bandwidth Test (btest) server and client; the server is a procd service set up in /etc/config/btest" ;;
  esac
  if ! archs=$(openwrt_archs "$triple"); then
    say "skipping $base: no OpenWrt architecture for $triple"
    continue
  fi
  for arch in $archs; do
    build_ipk "$name" "$image" "$arch" "$service" "$conflicts" "$desc"
    built=$((built + 1))
  done
done
[ "$built" -gt 0 ] || die "no musl images in $IMAGES (make musl builds x86_64 and aarch64)"
say "built $built packages in $OUT"
