#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2317 # stand-ins called by the sourced init script; `check && ok || bad`: ok and bad only print, they never fail
# The OpenWrt packages (issue 21; run by tests/packages.rs in `make test`, and by itself):
# runs package-ipk.sh on a directory of images named as make musl / make cross name them
# (BINARY, a host build, under the x86_64 names so the packaged one can run here; copies of it
# under the aarch64 and mips names, for the architecture mapping), then checks each package as
# opkg reads it: the outer gzipped tar and its three members in order, debian-binary,
# control fields, conffiles, maintainer scripts, the file list with modes and owners, and that
# the packaged binary runs; with opkg (OPKG=, not in Debian) also install, upgrade with a
# changed conffile, a refused conflicting variant and remove, into an offline root.
# usage: scripts/test-ipk.sh [BINARY]   (default target/release/btest). Exit 0 passed, 1 failed.
set -euo pipefail
SCRIPT=test-ipk
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/pkg-lib.sh
. "$(dirname "$0")/pkg-lib.sh"
BIN=$(realpath "${1:-$TARGET_DIR/release/btest}")
[ -x "$BIN" ] || die "$BIN: no such binary"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/images"
cp "$BIN" "$work/images/btest-x86_64-unknown-linux-musl"
strip "$work/images/btest-x86_64-unknown-linux-musl" 2>/dev/null || true
for n in btest-server-x86_64-unknown-linux-musl btest-client-x86_64-unknown-linux-musl; do
  cp "$work/images/btest-x86_64-unknown-linux-musl" "$work/images/$n"
done
# Never run: stand-ins for the architecture mapping.
for n in btest-aarch64-unknown-linux-musl btest-mips-unknown-linux-musl btest-x86_64-pc-windows-gnu.exe; do
  printf '#!/bin/sh\nexit 1\n' >"$work/images/$n"
done
export PKG_GZIP=${PKG_GZIP:-1}
IPK_IMAGES="$work/images" IPK_OUT="$work/out" bash "$ROOT/scripts/package-ipk.sh" >"$work/built"
V="$(pkg_version)-r1"

echo "== packages and architectures"
want=(btest_"$V"_x86_64 btest-server_"$V"_x86_64 btest-client_"$V"_x86_64
  btest_"$V"_aarch64_generic btest_"$V"_aarch64_cortex-a53 btest_"$V"_mips_24kc)
for w in "${want[@]}"; do
  grep -q "/$w.ipk\$" "$work/built" && ok "$w.ipk" || bad "no $w.ipk"
done
grep -q windows "$work/built" && bad "a package from the Windows image" || ok "no package from a .exe"

# check_ipk FILE NAME SERVICE(0|1)
check_ipk() {
  local ipk=$1 name=$2 service=$3 d
  d=$(mktemp -d "$work/x.XXXXXX")
  echo "== $(basename "$ipk")"
  gzip -t "$ipk" && ok "outer: gzip" || bad "outer: not gzip"
  [ "$(tar -tzf "$ipk" | tr '\n' ' ')" = "./debian-binary ./data.tar.gz ./control.tar.gz " ] &&
    ok "members: ./debian-binary ./data.tar.gz ./control.tar.gz" || bad "members: $(tar -tzf "$ipk" | tr '\n' ' ')"
  tar -C "$d" -xzf "$ipk"
  [ "$(cat "$d/debian-binary")" = 2.0 ] && ok "debian-binary: 2.0" || bad "debian-binary: $(cat "$d/debian-binary")"
  mkdir "$d/c" "$d/data"
  tar -C "$d/c" -xzf "$d/control.tar.gz"
  tar -C "$d/data" -xzf "$d/data.tar.gz"
  local f v
  f() { sed -n "s/^$1: //p" "$d/c/control"; }
  [ "$(f Package)" = "$name" ] && ok "Package: $name" || bad "Package: $(f Package)"
  [ "$(f Version)" = "$V" ] && ok "Version: $V" || bad "Version: $(f Version)"
  [ "$(f Architecture)" = x86_64 ] && ok "Architecture: x86_64" || bad "Architecture: $(f Architecture)"
  [ "$(f Source)" = feeds/packages/net/btest ] && ok "Source: feeds/packages/net/btest (the feed CI's test.sh lookup)" || bad "Source: $(f Source)"
  [ "$(f Installed-Size)" = "$(gzip -dc "$d/data.tar.gz" | wc -c)" ] && ok "Installed-Size: $(f Installed-Size)" || bad "Installed-Size: $(f Installed-Size)"
  for v in Maintainer License Section Description SourceDateEpoch; do
    [ -n "$(f "$v")" ] && ok "$v present" || bad "$v missing"
  done
  [ -n "$(f Conflicts)" ] && ok "Conflicts: $(f Conflicts)" || bad "no Conflicts with the other variants"
  tar -tvzf "$d/data.tar.gz" | awk '{ print $1, $2, $6 }' >"$work/list"
  grep -qxF -- '-rwxr-xr-x 0/0 ./usr/bin/btest' "$work/list" && ok "./usr/bin/btest 755 0/0" || bad "./usr/bin/btest: $(grep usr/bin/btest "$work/list")"
  "$d/data/usr/bin/btest" --version >/dev/null && ok "the packaged binary runs: $("$d/data/usr/bin/btest" --version)" || bad "the packaged binary does not run"
  if [ "$service" = 1 ]; then
    grep -qxF -- '-rwxr-xr-x 0/0 ./etc/init.d/btest' "$work/list" && ok "./etc/init.d/btest 755" || bad "init script: $(grep init.d "$work/list")"
    grep -qxF -- '-rw------- 0/0 ./etc/config/btest' "$work/list" && ok "./etc/config/btest 600" || bad "config: $(grep etc/config "$work/list")"
    [ "$(cat "$d/c/conffiles" 2>/dev/null)" = /etc/config/btest ] && ok "conffiles: /etc/config/btest" || bad "conffiles: $(cat "$d/c/conffiles" 2>/dev/null)"
    for s in postinst prerm; do
      [ -x "$d/c/$s" ] && sh -n "$d/c/$s" && grep -q "default_$s" "$d/c/$s" && ok "$s: OpenWrt's default_$s" || bad "$s"
    done
    sh -n "$d/data/etc/init.d/btest" && ok "init script: sh -n clean" || bad "init script: sh -n"
    grep -q '^USE_PROCD=1' "$d/data/etc/init.d/btest" && ok "init script: procd" || bad "init script: not procd"
    grep -qE "^[[:space:]]*option enabled '0'" "$d/data/etc/config/btest" && ok "config: the server is off until enabled" || bad "config: server enabled by default"
  else
    ! grep -q ' ./etc' "$work/list" && ok "binary only" || bad "client package has: $(tr '\n' ' ' <"$work/list")"
    [ ! -e "$d/c/conffiles" ] && ok "no conffiles" || bad "client package has conffiles"
  fi
}
check_ipk "$work/out/btest_${V}_x86_64.ipk" btest 1
check_ipk "$work/out/btest-server_${V}_x86_64.ipk" btest-server 1
check_ipk "$work/out/btest-client_${V}_x86_64.ipk" btest-client 0

# With opkg (OpenWrt's opkg-lede; not in Debian: OPKG=/path/to/opkg-cl, built as
# docs/reliability.md says), the packages as opkg takes them, into an offline root.
OPKG=${OPKG:-$(command -v opkg-cl || command -v opkg || true)}
if [ -n "$OPKG" ]; then
  echo "== opkg ($OPKG), offline root"
  R=$work/opkg-root
  mkdir -p "$R/usr/lib/opkg" "$R/var/lock"
  printf 'dest root /\nlists_dir ext /var/opkg-lists\narch all 1\narch x86_64 10\n' >"$work/opkg.conf"
  O=("$OPKG" -f "$work/opkg.conf" --offline-root "$R")
  IPK_IMAGES="$work/images" IPK_OUT="$work/out2" IPK_RELEASE=2 bash "$ROOT/scripts/package-ipk.sh" >/dev/null 2>&1
  "${O[@]}" install "$work/out/btest_${V}_x86_64.ipk" >"$work/opkg.log" 2>&1 && ok "opkg install btest" || bad "opkg install: $(tail -n 3 "$work/opkg.log")"
  "$R/usr/bin/btest" --version >/dev/null 2>&1 && ok "installed binary runs" || bad "installed binary does not run"
  grep -q '^Status: install user installed' "$R/usr/lib/opkg/status" && grep -q '^ /etc/config/btest [0-9a-f]\{64\}' "$R/usr/lib/opkg/status" &&
    ok "opkg status: installed, conffile /etc/config/btest with its hash" || bad "opkg status: $(tr '\n' ' ' <"$R/usr/lib/opkg/status")"
  echo "# changed by test-ipk.sh" >>"$R/etc/config/btest"
  "${O[@]}" install "$work/out2/btest_$(pkg_version)-r2_x86_64.ipk" >"$work/opkg.log" 2>&1 && ok "opkg upgrade to -r2" || bad "opkg upgrade: $(tail -n 3 "$work/opkg.log")"
  grep -q 'test-ipk.sh' "$R/etc/config/btest" && [ -f "$R/etc/config/btest-opkg" ] && ok "changed config kept, new one as btest-opkg" || bad "changed config not kept"
  if "${O[@]}" install "$work/out/btest-server_${V}_x86_64.ipk" >"$work/opkg.log" 2>&1; then bad "btest-server installed next to btest"; else ok "btest-server refused: conflicts with btest"; fi
  "${O[@]}" remove btest >"$work/opkg.log" 2>&1 && ok "opkg remove" || bad "opkg remove: $(tail -n 3 "$work/opkg.log")"
  [ ! -e "$R/usr/bin/btest" ] && grep -q 'test-ipk.sh' "$R/etc/config/btest" && ok "binary gone, changed config left" || bad "after remove: $(find "$R/usr/bin" "$R/etc/config" | tr '\n' ' ')"
else
  echo "  note  no opkg here (OPKG=/path/to/opkg-cl): the packages were checked as files, not installed"
fi

echo "== the feed package directory"
feed=$ROOT/scripts/openwrt/btest
for f in Makefile test.sh files/btest.init files/btest.config; do
  [ -f "$feed/$f" ] && ok "scripts/openwrt/btest/$f" || bad "no scripts/openwrt/btest/$f"
done
sh -n "$feed/test.sh" && ok "test.sh: sh -n clean" || bad "test.sh: sh -n"
grep -q 'rust-package.mk' "$feed/Makefile" && grep -q 'PKG_BUILD_DEPENDS:=rust/host' "$feed/Makefile" &&
  ok "Makefile on lang/rust/rust-package.mk" || bad "Makefile does not use rust-package.mk"
for p in btest btest-server btest-client; do
  grep -q "BuildPackage,$p))" "$feed/Makefile" && ok "variant $p" || bad "no variant $p"
done
# The feed Makefile under GNU make with stand-ins for OpenWrt's rules.mk, package.mk and the
# feed's rust-package.mk (no buildroot here): it parses, defines the three packages with their
# variants and conflicts, and picks each variant's cargo features.
fake=$work/feed
mkdir -p "$fake/net/btest" "$fake/lang/rust" "$fake/include"
cp "$feed/Makefile" "$fake/net/btest/Makefile"
: >"$fake/rules.mk"
cat >"$fake/include/package.mk" <<'MK'
define BuildPackage
$(eval $(Package/$(1)))
$(info package=$(1) variant=$(VARIANT) conflicts=$(CONFLICTS) install=$(if $(Package/$(1)/install),yes,no) conffiles=$(strip $(Package/$(1)/conffiles)))
$(eval VARIANT:=)$(eval CONFLICTS:=)
endef
MK
cat >"$fake/lang/rust/rust-package.mk" <<'MK'
RUST_ARCH_DEPENDS:=@(aarch64||x86_64)
Build/Compile/Cargo=cargo install --features $(RUST_PKG_FEATURES) $(2)
all:
	@echo features=$(RUST_PKG_FEATURES) compile='$(Build/Compile)'
MK
for variant in full server client; do
  make -s -C "$fake/net/btest" TOPDIR="$fake" INCLUDE_DIR="$fake/include" BUILD_VARIANT="$variant" all \
    >"$work/mk-$variant.out" 2>&1 || bad "feed Makefile ($variant): $(tail -n 2 "$work/mk-$variant.out")"
done
grep -qx 'package=btest variant=full conflicts= install=yes conffiles=/etc/config/btest' "$work/mk-full.out" &&
  grep -qx 'package=btest-server variant=server conflicts=btest install=yes conffiles=/etc/config/btest' "$work/mk-full.out" &&
  grep -qx 'package=btest-client variant=client conflicts=btest btest-server install=yes conffiles=' "$work/mk-full.out" &&
  ok "feed Makefile: btest, btest-server, btest-client with variants, conflicts, conffiles" || bad "feed Makefile packages: $(grep package= "$work/mk-full.out" | tr '\n' ';')"
grep -q '^features=client,server,through,other-port compile=.*--no-default-features' "$work/mk-full.out" &&
  grep -q '^features=server ' "$work/mk-server.out" && grep -q '^features=client ' "$work/mk-client.out" &&
  ok "feed Makefile: features per variant, --no-default-features" || bad "feed Makefile features: $(grep -h features= "$work"/mk-*.out | tr '\n' ';')"
# Every flag the init script and test.sh hand to btest is one btest knows.
help=$("$BIN" server --help 2>&1; "$BIN" client --help 2>&1)
unknown=""
# shellcheck disable=SC2013 # one flag per word
for flag in $(grep -ohE -- '--[a-z][a-z0-9-]+' "$feed/files/btest.init" "$feed/test.sh" | sort -u); do
  grep -qE -- "(^|[^a-z-])$flag([^a-z-]|\$)" <<<"$help" || unknown+=" $flag"
done
[ -z "$unknown" ] && ok "every flag in btest.init and test.sh is in btest server/client --help" || bad "unknown flags:$unknown"
fv=$(sed -n 's/^PKG_VERSION:=//p' "$feed/Makefile")
[ "$fv" = "$(pkg_version)" ] && ok "PKG_VERSION $fv = Cargo.toml's" || bad "PKG_VERSION $fv, Cargo.toml says $(pkg_version)"

echo "== the init script's server command, under stand-ins for OpenWrt's shell functions"
# A UCI section as config_* would read it: every kind of option the script maps.
stub=$work/owrt
mkdir -p "$stub/lib/functions"
cat >"$stub/lib/functions/network.sh" <<'NET'
network_get_ipaddr() { [ "$2" = lan ] && eval "$1=127.0.0.1"; }
network_get_ipaddr6() { eval "$1="; return 1; }
NET
PORT=$(free_port 2940)
(
  set +eu # OpenWrt's scripts are written for ash without -e/-u
  # shellcheck disable=SC2034 # read by the init script
  IPKG_INSTROOT=$stub
  extra_command() { :; }
  procd_open_instance() { :; }
  procd_close_instance() { :; }
  procd_set_param() {
    [ "$1" = command ] || return 0
    shift
    printf '%s\n' "$@" >"$work/cmd"
  }
  procd_append_param() {
    [ "$1" = command ] || return 0
    shift
    printf '%s\n' "$@" >>"$work/cmd"
  }
  config_load() { :; }
  config_foreach() { "$1" main; }
  config_get() {
    local _cv=""
    case "$3" in
      port) _cv=$PORT ;; max_sessions) _cv=7 ;; allocate_udp_ports_from) _cv=$((PORT + 1)) ;;
      max_duration) _cv=1m ;; handshake_timeout) _cv=3s ;; max_rate) _cv=100M ;; user) _cv="admin" ;;
      password) _cv=secret ;; auth) _cv=ecsrp5 ;; logins_per_minute) _cv=10 ;; verbosity) _cv=2 ;;
      *) _cv=${4:-} ;;
    esac
    eval "$1=\$_cv"
  }
  config_get_bool() {
    case "$3" in enabled) eval "$1=1" ;; *) eval "$1=${4:-0}" ;; esac
  }
  config_list_foreach() {
    case "$2" in
      interface) "$3" lan ;;
      allow) "$3" 127.0.0.0/8 ;;
      deny) "$3" 192.0.2.0/24 ;;
    esac
  }
  # shellcheck source=/dev/null
  . "$feed/files/btest.init"
  start_service
)
mapfile -t cmd <"$work/cmd"
printf '  cmd   %s\n' "${cmd[*]}"
[ "${cmd[0]}" = /usr/bin/btest ] && [ "${cmd[1]}" = server ] && ok "command: /usr/bin/btest server" || bad "command: ${cmd[*]:0:2}"
grep -qxF -- "127.0.0.1:$PORT" "$work/cmd" && ok "list interface 'lan' -> --listen 127.0.0.1:$PORT" || bad "interface not mapped to --listen"
# The same options to this machine's btest: it must start and listen with them.
"$BIN" "${cmd[@]:1}" >"$work/srv.log" 2>&1 &
srv=$!
if wait_listening "$PORT"; then ok "btest accepts them and listens on $PORT"; else bad "btest with the init script's options: $(tail -n 2 "$work/srv.log")"; fi
kill "$srv" 2>/dev/null || true
wait "$srv" 2>/dev/null || true

if [ "$fails" -gt 0 ]; then
  say "$fails check(s) failed"
  exit 1
fi
say "passed"
