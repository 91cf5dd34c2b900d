#!/usr/bin/env bash
# `make deb`: a Debian/Ubuntu package of btest built with dpkg-deb alone (no debhelper), from
# the release binary: /usr/bin/btest, the man page, bash/zsh/fish completions, the systemd unit
# (scripts/systemd/btest.service, with /usr/bin/btest), /etc/default/btest as a conffile (dpkg
# keeps a changed one across upgrades and removes it on purge), and the maintainer scripts in
# scripts/deb/ (postinst reloads systemd and does not enable the server; prerm stops and
# disables it on remove; postrm --purge removes its state in /var/lib/btest).
# usage: scripts/package-deb.sh [BINARY]   (default target/release/btest)
# Env: DEB_OUT (directory, default target/dist/pkg), DEB_REVISION (default 1), DEB_COMPRESS
# (dpkg-deb -Z: xz, gzip, zstd, none; default xz), DEB_LEVEL (-z), DEB_MAINTAINER.
# Prints the .deb's path on stdout.
set -euo pipefail
SCRIPT=package-deb
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"

BIN=$(realpath "${1:-$TARGET_DIR/release/btest}")
[ -x "$BIN" ] || die "$BIN: no such binary (make release builds it)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian/Ubuntu: apt-get install dpkg)"
OUT=${DEB_OUT:-$PKG_OUT}
VERSION="$(pkg_version)-${DEB_REVISION:-1}"
MAINTAINER=${DEB_MAINTAINER:-btest maintainers <btest@example.org>}

# The Debian architecture from the ELF header, so a cross image (target/dist/btest-aarch64-...)
# packages as well as the native build.
machine=$(LC_ALL=C readelf -h "$BIN" | sed -n 's/^ *Machine: *//p')
case "$machine" in
  *X86-64*) ARCH=amd64 ;;
  *AArch64*) ARCH=arm64 ;;
  ARM) ARCH=armhf ;;
  *80386*) ARCH=i386 ;;
  *) die "$BIN: no Debian architecture for ELF machine '$machine'" ;;
esac

# Depends from what the binary links: a static build needs nothing; the glibc build needs
# libc6 at least as new as the newest versioned symbol it uses, and libgcc-s1 for unwinding
# (panic = "unwind", Cargo.toml). dpkg-shlibdeps would say the same but wants a source tree.
DEPENDS=""
needed=$(LC_ALL=C readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for lib in $needed; do
  case "$lib" in
    libc.so.6)
      glibc=$(LC_ALL=C readelf --dyn-syms -W "$BIN" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
      DEPENDS+="${DEPENDS:+, }libc6 (>= ${glibc:-2.17})"
      ;;
    libgcc_s.so.1) DEPENDS+="${DEPENDS:+, }libgcc-s1 | libgcc1" ;;
    libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;; # part of libc6
    *) die "$BIN links $lib: add its Debian package to package-deb.sh" ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
  "$root/usr/lib/systemd/system" "$root/etc/default" "$root/usr/share/doc/btest" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
install -m 0755 "$BIN" "$root/usr/bin/btest"
gzip -9n <"$ROOT/docs/btest.1" >"$root/usr/share/man/man1/btest.1.gz"
chmod 0644 "$root/usr/share/man/man1/btest.1.gz"
{
  echo "# From the btest package, which does not enable it: edit /etc/default/btest, then"
  echo "#   systemctl enable --now btest"
  sed -e 's|/usr/local/bin/btest|/usr/bin/btest|g' "$ROOT/scripts/systemd/btest.service"
} >"$root/usr/lib/systemd/system/btest.service"
chmod 0644 "$root/usr/lib/systemd/system/btest.service"
# Mode 600: it may hold a password (dpkg keeps the mode of the file in the package).
install -m 0600 "$ROOT/scripts/systemd/btest.env" "$root/etc/default/btest"
install -m 0644 "$ROOT/README.md" "$root/usr/share/doc/btest/README.md"
cat >"$root/usr/share/doc/btest/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: btest

Files: *
Copyright: the btest authors
License: MIT or Apache-2.0
 See /usr/share/common-licenses/Apache-2.0 for the Apache License 2.0; the MIT
 license is the usual one (https://opensource.org/license/mit).
COPYRIGHT
chmod 0644 "$root/usr/share/doc/btest/copyright"

if cbin=$(completions_bin "$BIN"); then
  write_completions "$cbin" "$work/comp"
  install -m 0644 "$work/comp/btest.bash" "$root/usr/share/bash-completion/completions/btest"
  install -m 0644 "$work/comp/_btest" "$root/usr/share/zsh/vendor-completions/_btest"
  install -m 0644 "$work/comp/btest.fish" "$root/usr/share/fish/vendor_completions.d/btest.fish"
else
  die "no btest here prints completions (btest completions bash): build with the default features"
fi

for s in postinst prerm postrm; do
  install -m 0755 "$ROOT/scripts/deb/$s" "$root/DEBIAN/$s"
done
echo /etc/default/btest >"$root/DEBIAN/conffiles"
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
  echo "Package: btest"
  echo "Version: $VERSION"
  echo "Architecture: $ARCH"
  echo "Maintainer: $MAINTAINER"
  echo "Installed-Size: $installed_kib"
  [ -z "$DEPENDS" ] || echo "Depends: $DEPENDS"
  echo "Section: net"
  echo "Priority: optional"
  echo "Description: MikroTik Bandwidth Test (btest) server and client"
  echo " Server and client of the MikroTik Bandwidth Test protocol: RouterOS"
  echo " /tool bandwidth-test runs against the server, the client tests any"
  echo " RouterOS bandwidth-server. TCP and UDP, transmit/receive/both,"
  echo " multi-connection TCP, MD5 and EC-SRP5 logins, JSON/CSV results, latency"
  echo " under load. The btest.service unit (not enabled on install) runs the"
  echo " server with the options in /etc/default/btest."
} >"$root/DEBIAN/control"

mkdir -p "$OUT"
deb="$OUT/btest_${VERSION}_${ARCH}.deb"
find "$root" -exec touch -h -d "@$(pkg_epoch)" {} +
SOURCE_DATE_EPOCH=$(pkg_epoch) dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" \
  ${DEB_LEVEL:+-z"$DEB_LEVEL"} --build "$root" "$deb" >/dev/null
say "built $deb ($(stat -c %s "$deb") bytes)"
echo "$deb"
