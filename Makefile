# btest: the only task runner. CI runs `bash .ci/run`, which calls `make lint` and `make test`.
CARGO ?= cargo
BIN := target/release/btest
DEMO_PORT ?= 2700

.PHONY: build release test lint fmt bench demo clean

build:            ## debug build
	$(CARGO) build

release:          ## optimised build (LTO, stripped)
	$(CARGO) build --release

test:             ## every unit and integration test
	$(CARGO) test --all-targets

lint:             ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: release    ## benchmarks: ours next to iperf3 on loopback, auth handshake cost
	$(CARGO) bench --bench auth
	$(CARGO) bench --bench loopback

demo: release     ## a real test on loopback: server + TCP and UDP in both directions
	bash scripts/demo.sh $(BIN) $(DEMO_PORT)

clean:
	$(CARGO) clean
