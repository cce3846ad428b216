# Switchboard — build, run and test.
#
#   make run     build and start the server on its embedded defaults (127.0.0.1:5060)
#   make test    install missing test tools, then vet, race-test every package and fuzz briefly
#   make bench   hot-path Go benchmarks with allocation counts
#   make fuzz    run the parser fuzzer until interrupted (FUZZTIME=30s to bound it)

GO        ?= go
BIN       := bin/switchboard
FUZZTIME  ?= 20s
BENCHTIME ?= 1s
COUNT     ?= 6

.PHONY: all build run test test-deps vet unit allocs fuzz-short fuzz bench clean

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

unit:
	$(GO) test -race -count=1 ./...

# Zero-allocation assertions, without -race: the race detector's sync.Pool
# drops items on purpose, so allocation tests skip themselves under -race.
allocs:
	$(GO) test -count=1 -run 'Alloc' ./...

fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./parser

test: test-deps vet unit allocs fuzz-short

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(if $(filter 20s,$(FUZZTIME)),1h,$(FUZZTIME)) ./parser

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) -benchtime $(BENCHTIME) ./... | tee bench/results/go-bench.txt

clean:
	rm -rf bin
