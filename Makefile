# btest: the only task runner. CI runs `bash .ci/run`, which calls `make lint` and `make test`.
CARGO ?= cargo
BIN := target/release/btest
DEMO_PORT ?= 2700

# `make install`: PREFIX and DESTDIR as usual; SYSTEMD=1 also installs the systemd unit and, when
# absent, its environment file ENVFILE (options in BTEST_OPTS). INSTALL_BIN picks another binary,
# e.g. INSTALL_BIN=target/dist/btest-aarch64-unknown-linux-musl (then nothing is built).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
ENVFILE ?= /etc/default/btest
SYSTEMD ?= 0
INSTALL_BIN ?= $(BIN)
INSTALL ?= install

.PHONY: build release test lint fmt bench demo clean
.PHONY: musl size cross cross-test rss soak check-docs fuzz-smoke install uninstall
.PHONY: deb openwrt openwrt-apk container dist packages container-test package-test
.PHONY: check-platforms windows windows-test

build:            ## debug build
	$(CARGO) build

release:          ## optimised build (LTO, stripped)
	$(CARGO) build --release

# Integration tests mostly wait (on timers, sockets, child processes; a full run used 0.5 CPU
# on average), and the rate-measuring ones queue on one lock (tests/util exclusive()); with the
# default 2 threads on a 2-core machine the queue idled half the harness. With 4 (and issue 20's
# shorter waits) the integration binary took 156-173 s instead of 293 s, and passed under
# `stress -c 2` (docs/reliability.md, "The suite in under 4 minutes").
TEST_THREADS ?= 4

test:             ## every unit and integration test (benches run only under `make bench`)
	$(CARGO) test --lib --bins --tests -- --test-threads=$(TEST_THREADS)

lint:             ## formatting, protocol rules only in src/wire/, clippy (full and role-only builds), warnings are errors
	$(CARGO) fmt --all -- --check
	bash scripts/check-wire.sh
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --lib --bins --no-default-features --features server -- -D warnings
	$(CARGO) clippy --lib --bins --no-default-features --features client -- -D warnings
	$(CARGO) clippy --lib --bins --no-default-features --features client,server,through,other-port -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: release    ## benchmarks: ours next to iperf3 3.12 (and IPERF3=binary) on lo and veth; auth cost
	$(CARGO) bench --bench auth
	$(CARGO) bench --bench loopback

demo: release     ## a real test on loopback: server + TCP and UDP in both directions
	bash scripts/demo.sh $(BIN) $(DEMO_PORT)

clean:
	$(CARGO) clean

musl:             ## static x86_64 and aarch64 builds in target/dist/ (+ role-only ones), checked
	CARGO="$(CARGO)" bash scripts/build-musl.sh
	bash scripts/check-static.sh

size:             ## stripped and xz -9 size of each build there is (native release, target/dist/*)
	bash scripts/size.sh

# `make cross` (issue 21): the router image for every router CPU, each in target/dist/btest-TRIPLE.
# armv7 and MIPS are built with cargo-zigbuild and zig (installed from crates.io and PyPI when
# missing); CROSS_ROLES="server client" adds the role-only builds. Slow (a fat-LTO build with
# std rebuilt per target): not part of `make test`.
CROSS_TARGETS ?= x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf mips-unknown-linux-musl mipsel-unknown-linux-musl
CROSS_ROLES ?=

cross:            ## static router images for x86_64, aarch64, armv7, mips, mipsel in target/dist/, checked
	MUSL_TARGETS="$(CROSS_TARGETS)" MUSL_ROLES="$(CROSS_ROLES)" CARGO="$(CARGO)" bash scripts/build-musl.sh
	bash scripts/check-static.sh $(foreach t,$(CROSS_TARGETS),target/dist/btest-$(t))
	bash scripts/size.sh

cross-test:       ## each image of `make cross` under qemu-user vs the native build, both roles: TCP, UDP, MD5, EC-SRP5
	bash scripts/cross-test.sh

check-platforms:  ## cargo check + clippy -D warnings for Windows (gnu, msvc), macOS (x86_64, aarch64), FreeBSD (adds the rustup targets)
	CARGO="$(CARGO)" bash scripts/check-platforms.sh

windows:          ## target/dist/btest-x86_64-pc-windows-gnu.exe, cross-compiled with mingw-w64 (installs it if missing)
	CARGO="$(CARGO)" bash scripts/windows.sh

windows-test:     ## the .exe under Wine against the native build over loopback, both roles (skips without Wine)
	CARGO="$(CARGO)" bash scripts/windows-test.sh

rss: release      ## server RSS idle and with 1 and 20 TCP connections (the musl build if there is one)
	bash scripts/rss.sh

# `make soak`: SOAK_SESSIONS sequential sessions, then 100 at once, against one server process
# (SOAK_BIN, default the release build), then RSS over SOAK_WAVES waves of 100 sessions.
SOAK_SESSIONS ?= 1000
SOAK_BIN ?= $(abspath $(BIN))
SOAK_WAVES ?= 8

soak: release     ## 1000 sessions + 100 at once vs one server: threads, fds, UDP ports, RSS back to baseline; RSS over 8 waves
	SOAK_SESSIONS=$(SOAK_SESSIONS) SOAK_CONCURRENT=100 SOAK_BIN=$(SOAK_BIN) \
	  $(CARGO) test --test integration soak:: -- --nocapture --test-threads=1
	SOAK_WAVES=$(SOAK_WAVES) bash scripts/soak.sh $(SOAK_BIN)

check-docs:       ## every long option in --help appears in docs/btest.1 and README.md
	bash scripts/check-docs.sh

fuzz-smoke:       ## every cargo-fuzz target in fuzz/ for 5 s on its corpus (installs cargo-fuzz if missing)
	CARGO="$(CARGO)" bash scripts/fuzz-smoke.sh

# Packages (issue 21). Everything goes to target/dist/pkg/ (size.sh and check-static.sh take
# every btest-* file in target/dist/ for an image). `make package-test` runs the packaging
# tests alone (they are in `make test` too, against the debug build).
deb: release      ## Debian/Ubuntu .deb from the release binary (dpkg-deb; unit, conffile, completions)
	bash scripts/package-deb.sh $(BIN)

openwrt:          ## OpenWrt .ipk packages (opkg: 23.05, 24.10) from the static images in target/dist/
	bash scripts/package-ipk.sh

openwrt-apk:      ## OpenWrt 25.12 .apk packages (unsigned) from the same images; needs apk-tools v3 (APK=path)
	bash scripts/package-apk.sh

container:        ## FROM-scratch multi-arch container image (podman) of the static images; CONTAINER_ARCHIVE=1 saves it
	bash scripts/package-container.sh

container-test:   ## builds the image, runs a server in it (host network) and a client against it
	bash scripts/test-container.sh $(BIN)

dist: release     ## release tarballs per target (binary, README, man page, completions) + SHA256SUMS
	bash scripts/dist.sh

packages: deb openwrt dist ## .deb, .ipk and tarballs (make musl / make cross first for the images)

package-test: release ## the packaging tests on the release binary: .deb (root), .ipk, tarballs, container
	bash scripts/test-deb.sh $(BIN) || [ $$? -eq 77 ]
	bash scripts/test-ipk.sh $(BIN)
	bash scripts/test-dist.sh $(BIN)
	bash scripts/test-apk.sh $(BIN) || [ $$? -eq 77 ]
	bash scripts/test-container.sh $(BIN) || [ $$? -eq 77 ]

install: $(if $(filter $(BIN),$(INSTALL_BIN)),release) ## binary + man page (+ systemd unit: SYSTEMD=1)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/btest
	$(INSTALL) -m 0644 docs/btest.1 $(DESTDIR)$(MANDIR)/man1/btest.1
ifeq ($(SYSTEMD),1)
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(dir $(ENVFILE))
	sed -e 's|/usr/local/bin/btest|$(BINDIR)/btest|g' -e 's|/etc/default/btest|$(ENVFILE)|g' \
	  scripts/systemd/btest.service >$(DESTDIR)$(SYSTEMDUNITDIR)/btest.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/btest.service
	@if [ -e $(DESTDIR)$(ENVFILE) ]; then \
	  echo "keeping the existing $(DESTDIR)$(ENVFILE)"; \
	else \
	  $(INSTALL) -m 0600 scripts/systemd/btest.env $(DESTDIR)$(ENVFILE); \
	fi
	@echo "systemd: edit $(ENVFILE), then: systemctl daemon-reload && systemctl enable --now btest"
endif

uninstall:        ## removes what install put there, except the environment file (your settings)
	rm -f $(DESTDIR)$(BINDIR)/btest $(DESTDIR)$(MANDIR)/man1/btest.1
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/btest.service
	@if [ -e $(DESTDIR)$(ENVFILE) ]; then echo "left $(DESTDIR)$(ENVFILE) in place"; fi
