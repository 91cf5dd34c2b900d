#!/bin/sh
# Run by the packages feed's CI on an OpenWrt image with the package installed:
#   sh test.sh PKG_NAME PKG_VERSION
# The server variants: a server on the loopback (its UCI section enabled for the test), a 2 s
# TCP test against it in both directions, the service stopped and the config put back.
# The client: its version, and a refused connection reported as an error, not a hang.

pkg="${1:-$PKG_NAME}"
version="${2:-$PKG_VERSION}"

check_version() {
	out="$(btest --version)" || return 1
	case "$out" in
		*"$version"*) return 0 ;;
	esac
	echo "btest --version says '$out', the package is $version" >&2
	return 1
}

case "$pkg" in
	btest | btest-server)
		check_version || exit 1
		uci set btest.main.enabled='1'
		uci set btest.main.port='2000'
		uci -q add_list btest.main.listen='127.0.0.1'
		uci commit btest
		service btest start
		sleep 2
		result=0
		if [ "$pkg" = btest ]; then
			btest client 127.0.0.1 --direction both --duration 2s || result=$?
		else
			# No client in this variant: the server must at least accept on its port.
			netstat -ltn 2>/dev/null | grep -q '127.0.0.1:2000 ' || result=1
		fi
		service btest stop
		uci revert btest 2>/dev/null
		uci set btest.main.enabled='0'
		uci -q del_list btest.main.listen='127.0.0.1'
		uci commit btest
		exit "$result"
		;;
	btest-client)
		check_version || exit 1
		# Nothing listens on port 9 here: the client must fail, quickly, with exit code 1 or 2.
		btest client 127.0.0.1:9 --duration 1s
		rc=$?
		[ "$rc" -ne 0 ] || exit 1
		exit 0
		;;
	*)
		echo "Untested package: $pkg" >&2
		exit 1
		;;
esac
