# FlowFabric for Go. `make bench` runs the harness on a throwaway local Valkey;
# `make test` is what CI runs (after ci/install-valkey.sh).

GO ?= go

# staticcheck release 2026.2.2, pinned by its module version: the module
# proxy serves honnef.co/go/tools by semver tag (v0.8.2), not by release name.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Every package of every module in go.work: the engine (the root module) and the nested
# modules that keep heavy dependencies away from its users (bench, profiles, cmd/ffbench,
# cmd/ffengine, valkeytest/container, otel). `./...` would name the root module's packages only.
PKGS := github.com/flowfabric/flowfabric-go/...

.PHONY: test bench perf-gate fmt fmt-check vet staticcheck fuzz install-valkey

## test: gofmt check, go vet, staticcheck, then race tests against real valkey-server processes.
test: fmt-check vet staticcheck
	$(GO) test -race -count=1 $(PKGS)

## bench: the main job: installs Valkey if missing, runs the quick profile (under 90 s on
## 2 cores) on a throwaway local Valkey, prints the summary and writes
## bench-results/<timestamp>/ (report.json, report.md, report.html, bench.txt).
bench:
	bash ci/install-valkey.sh
	$(GO) run ./cmd/ffbench run --profile quick $(BENCH_FLAGS)

## perf-gate: the gate profile against ci/baseline.json (ratios and counters; a failing
## metric is re-measured before the gate fails).
perf-gate:
	bash ci/install-valkey.sh
	bash ci/perf-gate.sh $(BENCH_FLAGS)

## fmt: rewrite Go files with gofmt.
fmt:
	gofmt -w .

## fmt-check: fail listing any file gofmt would change.
fmt-check:
	@files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then \
		echo "gofmt -l: these files need gofmt (run make fmt):"; \
		echo "$$files"; \
		exit 1; \
	fi

## vet: go vet every package of every module.
vet:
	$(GO) vet $(PKGS)

## staticcheck: staticcheck every package of every module (fetched through the Go module proxy on first use).
staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

## fuzz: fuzz the handle, arrivals and hand-off decoders and ffbench's SLO parser, 20s each.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeHandle -fuzztime=20s ./sdk/
	$(GO) test -run='^$$' -fuzz=FuzzParseArrival -fuzztime=20s ./valkeybackend/
	$(GO) test -run='^$$' -fuzz=FuzzParseHandoff -fuzztime=20s ./valkeybackend/
	$(GO) test -run='^$$' -fuzz=FuzzParseSLO -fuzztime=20s ./bench/

## install-valkey: install valkey-server and valkey-cli (Valkey 8) if missing.
install-valkey:
	bash ci/install-valkey.sh
