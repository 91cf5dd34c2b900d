#!/usr/bin/env bash
# shellcheck disable=SC2016 # the hooks are written out unexpanded, for the router's shell
# `make openwrt-apk`: OpenWrt 25.12 packages (.apk, apk-tools v3's format) from the static
# images in target/dist/, laid out as OpenWrt's include/package-pack.mk lays out its own:
# /lib/apk/packages/NAME.list, NAME.conffiles and NAME.conffiles_static (path and sha256 of
# /etc/config/btest, how OpenWrt's apk keeps a changed config), and the post-install,
# post-upgrade and pre-deinstall scripts calling OpenWrt's default_postinst/default_prerm.
# The same packages as package-ipk.sh: btest, btest-server, btest-client per architecture.
# Unsigned: install with `apk add --allow-untrusted` (25.12 checks signatures otherwise).
# Needs apk-tools v3 (`apk mkpkg`): APK=/path/to/apk, else `apk` on PATH. Debian 12 has no
# apk-tools package; build it from https://gitlab.alpinelinux.org/alpine/apk-tools (meson,
# ninja, libssl-dev, zlib1g-dev, libzstd-dev): docs/reliability.md has the commands.
# usage: scripts/package-apk.sh   Env: APK, APK_IMAGES (default target/dist), APK_OUT (default
#        target/dist/pkg/openwrt-apk), IPK_RELEASE (1). Prints the packages' paths.
# Exit 77 when there is no apk v3.
set -euo pipefail
SCRIPT=package-apk
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
APK=${APK:-$(command -v apk || true)}
# v3 is the one with mkpkg (`mkpkg --help` fails in a build without its help text).
if [ -z "$APK" ] || ! "$APK" --version 2>/dev/null | grep -q '^apk-tools 3\.'; then
  say "no apk-tools v3 with 'apk mkpkg' (APK=${APK:-unset}): see the header of this script"
  exit 77
fi
IMAGES=${APK_IMAGES:-$DIST}
OUT=${APK_OUT:-$PKG_OUT/openwrt-apk}
FILES=$ROOT/scripts/openwrt/btest/files
VERSION="$(pkg_version)-r${IPK_RELEASE:-1}"
MAINTAINER=${IPK_MAINTAINER:-btest maintainers <btest@example.org>}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# hook FILE KIND(postinst|prerm) NAME UPGRADE(0|1): OpenWrt's script for an apk package.
hook() {
  {
    echo '#!/bin/sh'
    [ "$4" = 1 ] && echo 'export PKG_UPGRADE=1'
    [ "$2" = postinst ] && echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
    echo '[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0'
    echo '. "${IPKG_INSTROOT}/lib/functions.sh"'
    echo 'export root="${IPKG_INSTROOT}"'
    echo "export pkgname=\"$3\""
    echo "default_$2"
  } >"$1"
  chmod 0755 "$1"
}

mkdir -p "$OUT"
built=0
shopt -s nullglob
for image in "$IMAGES"/btest-*; do
  [ -f "$image" ] || continue
  info=$(image_package "$image") || continue
  read -r name triple service <<<"$info"
  archs=$(openwrt_archs "$triple") || continue
  case "$name" in
    btest) desc="MikroTik Bandwidth Test (btest) server and client; the server is a procd service set up in /etc/config/btest" ;;
    btest-server) desc="MikroTik Bandwidth Test (btest) server alone, a procd service set up in /etc/config/btest" ;;
    *) desc="MikroTik Bandwidth Test (btest) client alone" ;;
  esac
  for arch in $archs; do
    d=$(mktemp -d "$work/apk.XXXXXX")
    root=$d/root
    install -d -m 0755 "$root/usr/bin" "$root/lib/apk/packages"
    install -m 0755 "$image" "$root/usr/bin/btest"
    scripts=()
    if [ "$service" = 1 ]; then
      install -d -m 0755 "$root/etc/init.d" "$root/etc/config"
      install -m 0755 "$FILES/btest.init" "$root/etc/init.d/btest"
      install -m 0600 "$FILES/btest.config" "$root/etc/config/btest"
      echo /etc/config/btest >"$root/lib/apk/packages/$name.conffiles"
      echo "/etc/config/btest $(sha256sum "$root/etc/config/btest" | cut -d' ' -f1)" \
        >"$root/lib/apk/packages/$name.conffiles_static"
      hook "$d/post-install" postinst "$name" 0
      hook "$d/post-upgrade" postinst "$name" 1
      hook "$d/pre-deinstall" prerm "$name" 0
      scripts=(--script "post-install:$d/post-install" --script "post-upgrade:$d/post-upgrade"
        --script "pre-deinstall:$d/pre-deinstall")
    fi
    # The list names itself, as OpenWrt's does (written before it is counted: it is listed).
    touch "$root/lib/apk/packages/$name.list"
    (cd "$root" && find . \( -type f -o -type l \) -printf '/%P\n' | LC_ALL=C sort) >"$d/list"
    mv "$d/list" "$root/lib/apk/packages/$name.list"
    mkdir -p "$OUT/$arch"
    pkg="$OUT/$arch/$name-$VERSION.apk"
    rm -f "$pkg"
    SOURCE_DATE_EPOCH=$(pkg_epoch) "$APK" mkpkg \
      --info "name:$name" --info "version:$VERSION" --info "description:$desc" \
      --info "arch:$arch" --info "license:MIT OR Apache-2.0" --info "origin:btest" \
      --info "maintainer:$MAINTAINER" "${scripts[@]}" \
      --files "$root" --output "$pkg"
    echo "$pkg"
    built=$((built + 1))
  done
done
[ "$built" -gt 0 ] || die "no musl images in $IMAGES (make musl builds x86_64 and aarch64)"
say "built $built packages in $OUT"
