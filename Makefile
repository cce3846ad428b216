# Switchboard — build, run and test.
#
#   make run     build and start the server on its embedded defaults (127.0.0.1:5060)
#   make test    install missing test tools, then vet, race-test every package and fuzz briefly
#   make bench        hot-path Go benchmarks (benchstat summary), then every sipp scenario against
#                     Switchboard and Kamailio side by side; report in bench/results/latest.md
#   make bench-short  every Go benchmark once and a short relay run through Switchboard and Kamailio in
#                     turn, failing if Switchboard's CPU per call exceeds 1.5x Kamailio's (part of make test)
#   make fuzz    run the parser fuzzer until interrupted (FUZZTIME=30s to bound it;
#                FUZZPKG=./parser/sdp for the SDP parser's)

GO        ?= go
BIN       := bin/switchboard
FUZZTIME  ?= 20s
# make test fuzzes a number of inputs, not a duration: with a duration,
# Go 1.26's fuzz coordinator can report its own deadline as a failure
# ("context deadline exceeded", golang/go#75804, fixed in Go 1.27).
FUZZCOUNT ?= 500000x
FUZZPKG   ?= ./parser
BENCHTIME ?= 1s
COUNT     ?= 6

.PHONY: all build run test test-deps vet unit allocs nested fuzz-short fuzz bench bench-go bench-short sipbench clean jssip

all: build

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/switchboard

run: build
	mkdir -p data
	./$(BIN) run

test-deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...

# cmd/switchboard's end-to-end tests (real binaries, sipp, database servers)
# take several minutes under -race on two shared cores: more than go test's
# default 10-minute bound per package leaves no margin for. Most of their time
# is waiting (for sipp's pauses, timers, restarts), so those that call
# t.Parallel run four at a time, more than the two cores go test would allow
# by default (cmd/switchboard/README.md, "Tests").
# The browser test keeps its screenshots in ARTEFACTS.
ARTEFACTS ?= $(CURDIR)/bin/test-artefacts
unit:
	SWB_TEST_ARTEFACTS=$(ARTEFACTS) $(GO) test -race -count=1 -parallel 4 -timeout 20m ./...

# Zero-allocation assertions, without -race: the race detector's sync.Pool
# drops items on purpose, so allocation tests skip themselves under -race.
allocs:
	$(GO) test -count=1 -run 'Alloc' ./...

fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZCOUNT) ./parser
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZCOUNT) ./parser/sdp
	$(GO) test -run '^$$' -fuzz '^FuzzWSFrames$$' -fuzztime $(FUZZCOUNT) ./transport

# bench/parsercompare is a module of its own (it keeps sipgo out of the main
# module), so ./... skips it: vet and build its benchmarks here.
nested:
	cd bench/parsercompare && $(GO) vet . && $(GO) test -count=1 -run . .

test: test-deps vet unit allocs nested fuzz-short bench-short

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(if $(filter 20s,$(FUZZTIME)),1h,$(FUZZTIME)) $(FUZZPKG)

# Benchmarks (bench/README.md). BENCHSTAT runs benchstat through the module
# proxy unless it is installed; SIPBENCH_FLAGS are passed to the sipp runner
# (e.g. SIPBENCH_FLAGS='-scenarios relay -servers switchboard').
BENCHSTAT      ?= $(shell command -v benchstat 2>/dev/null || echo "$(GO) run golang.org/x/perf/cmd/benchstat@latest")
SIPBENCH       := bin/sipbench
SIPBENCH_FLAGS ?=

sipbench:
	$(GO) build -o $(SIPBENCH) ./bench/cmd/sipbench

bench-go:
	mkdir -p bench/results
	bash -o pipefail -c "$(GO) test -run '^\$$' -bench . -benchmem -count $(COUNT) -benchtime $(BENCHTIME) ./... | tee bench/results/go-bench.txt"
	$(BENCHSTAT) bench/results/go-bench.txt > bench/results/go-benchstat.txt
	cd bench/parsercompare && $(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) -benchtime 200ms -cpu 1 . \
		> ../results/parsercompare.txt
	$(BENCHSTAT) -col /impl bench/results/parsercompare.txt > bench/results/parsercompare-benchstat.txt

bench: build sipbench bench-go
	./$(SIPBENCH) -switchboard $(BIN) -gobench bench/results/go-benchstat.txt $(SIPBENCH_FLAGS)

# The CI run: every benchmark once (their figures are not meaningful at one
# iteration; the run shows they work), then 1,000 calls through the stateful
# relay, twice, through Switchboard and Kamailio (when installed) in turn;
# it fails if any call fails or if Switchboard's CPU per call is over 1.5
# times Kamailio's, never on an absolute time (bench/README.md).
bench-short: build sipbench
	bash -o pipefail -c "$(GO) test -run '^\$$' -bench . -benchtime 1x -benchmem ./... | grep -Ev '^(goos|goarch|pkg|cpu|PASS)'"
	./$(SIPBENCH) -short -switchboard $(BIN)

clean:
	rm -rf bin

# The JsSIP bundle the browser test loads (cmd/switchboard/testdata/webrtc):
# committed, since CI has no npm. Rebuild it from the npm package with
# JSSIP_VERSION; jssip.LICENSE.md gets the licences of JsSIP and of the
# packages bundled with it.
JSSIP_VERSION  ?= 3.13.8
ESBUILD_VERSION ?= 0.28.2
jssip:
	rm -rf bin/jssip && mkdir -p bin/jssip
	cd bin/jssip && npm init -y >/dev/null && npm install --no-audit --no-fund jssip@$(JSSIP_VERSION) esbuild@$(ESBUILD_VERSION)
	cd bin/jssip && npx esbuild node_modules/jssip/lib/JsSIP.js --bundle --minify --format=iife --global-name=JsSIP --platform=browser --outfile=jssip.min.js
	cp bin/jssip/jssip.min.js cmd/switchboard/testdata/webrtc/jssip.min.js
	cd bin/jssip/node_modules && for p in jssip debug ms events sdp-transform; do \
		echo "## $$p $$(node -p "require('./$$p/package.json').version")"; echo; cat $$p/LICENSE* $$p/license*; echo; \
	done > ../../../cmd/switchboard/testdata/webrtc/jssip.LICENSE.md 2>/dev/null
