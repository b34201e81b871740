# sigil: make demo | make demo-replicas | make test | make build | make bench
#
# `make test` and `make demo` install what they need (Debian packages through
# apt-get, Go modules through the module proxy) when it is missing.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin
DEMO_DIR   ?= .demo
TEST_FLAGS ?= -race -count=1 -timeout 30m
BENCH      ?= .
BENCH_TIME ?= 2s

# Debian packages the tests and the demo use, each with a command or file
# that shows it is present.
DEB_PACKAGES := softhsm2 swtpm swtpm-tools tpm2-openssl tpm2-tools p11-kit p11-kit-modules openssl \
                postgresql haproxy python3 python3-jwt \
                python3-cryptography tpm2-abrmd libtss2-tcti-tabrmd0 dbus curl
DEB_PRESENT  := /usr/bin/softhsm2-util /usr/bin/swtpm /usr/bin/swtpm_setup \
                /usr/bin/swtpm_localca /usr/bin/tpm2_flushcontext /usr/bin/p11-kit \
                /usr/bin/openssl /usr/lib/softhsm/libsofthsm2.so \
                /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/postgres /usr/sbin/haproxy \
                /usr/bin/python3 /usr/lib/python3/dist-packages/jwt/__init__.py /usr/lib/python3/dist-packages/cryptography \
                /usr/sbin/tpm2-abrmd /usr/bin/dbus-daemon /usr/bin/curl

.PHONY: all build test vet demo demo-replicas bench deps fuzz clean

all: build

## deps: install the Debian packages and Go modules the tests need, if missing
deps:
	@missing=; for f in $(DEB_PRESENT); do [ -e "$$f" ] || missing=1; done; \
	ls /usr/lib/*/ossl-modules/tpm2.so >/dev/null 2>&1 || missing=1; \
	ls /usr/lib/*/pkcs11/p11-kit-client.so >/dev/null 2>&1 || missing=1; \
	ls /usr/lib/*/libtss2-tcti-tabrmd.so.0 >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
		echo "==> installing $(DEB_PACKAGES)"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES); \
	fi
	@$(GO) mod download

## build: bin/sigild and bin/sigil
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/... ./testenv/cmd/demoidp ./examples/showcase

vet:
	$(GO) vet ./...

## test: go vet and every test, against real SoftHSM2, swtpm and PostgreSQL
test: deps vet
	$(GO) test $(TEST_FLAGS) ./...

## demo: the main job end to end on this machine
demo: deps build
	@testenv/demo.sh $(DEMO_DIR)

## demo-replicas: two sigild replicas on PostgreSQL behind HAProxy survive the loss of one
demo-replicas: deps build
	@testenv/demo-replicas.sh $(DEMO_DIR)-replicas

## bench: benchmarks, each reported against a baseline measured in the same run
bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCH_TIME) ./...

## fuzz: run every fuzz target for a short while (FUZZ_TIME each)
FUZZ_TIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "==> $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZ_TIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN) $(DEMO_DIR) $(DEMO_DIR)-replicas
