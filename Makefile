# Herald's Makefile. The two commands a new user needs are `make run` and
# `make test`; both install what they need on a fresh Debian machine.

GO       ?= go
BIN      := bin/herald
PKGS     := ./...
# Go test flags for `make test`. The whole suite stays under 2 minutes on 2 cores:
# -p 4 runs four test binaries at once and -parallel 8 eight parallel tests in each,
# since most of a test's wall clock is spent waiting on its broker, PostgreSQL or a
# timer rather than on the CPU; -vet=all runs the whole of go vet inside go test,
# package by package, instead of as a step before it.
TESTFLAGS ?= -count=1 -timeout 20m -p 4 -parallel 8 -vet=all

.PHONY: all build build-loadtest run test test-short bench bench-heavy loadtest loadtest-history chaos lint fuzz proto deps clean deploy-check helm

all: build

# herald version prints these (empty outside a git checkout: then Go's own
# build stamp is used).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/herald

# The load test is a command of its own: the product binary does not link it.
build-loadtest: build
	$(GO) build -o bin/herald-loadtest ./cmd/herald-loadtest

## deps: install what the tests and the tour need (apt packages, the postgres user).
deps:
	@bash scripts/deps.sh

## run: start the whole pipeline on the embedded broker and a local Postgres in ./data.
run: deps build
	./$(BIN) run

## test: run every test (integration tests start their own broker and Postgres), and
## deploy-check.
test: deps deploy-check
	$(GO) test $(TESTFLAGS) $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

## bench: the per-hop benchmarks first (internal/hopbench: every hop of a notification,
## per record, about two minutes), then the other packages' quick benchmarks. The heavy
## measured runs (minutes each) are `make bench-heavy`. The output goes to bench.out;
## BENCHCOUNT=6 gives benchstat enough samples to compare two runs.
BENCHTIME  ?= 1s
BENCHCOUNT ?= 1
BENCH_HEAVY := HoldMillion|SinkVsRowUpdates|Sender100kMock1s|Pipeline100kMock1s|Placement|RestartToReady
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 30m ./internal/hopbench/ | tee bench.out
	$(GO) test -run '^$$' -bench . -skip '$(BENCH_HEAVY)' -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 30m \
		$$($(GO) list $(PKGS) | grep -v /internal/hopbench) | tee -a bench.out
	@echo "bench.out holds this run. To compare two: cp bench.out old.out, change something, make bench again, then"
	@echo "  go run golang.org/x/perf/cmd/benchstat@latest old.out bench.out"

## bench-heavy: the heavy measured runs, minutes each, once each: BenchmarkHoldMillion,
## BenchmarkSinkVsRowUpdates, BenchmarkSender100kMock1s, BenchmarkPipeline100kMock1s,
## BenchmarkPlacement, BenchmarkRestartToReady.
bench-heavy: SHELL := /bin/bash
bench-heavy: .SHELLFLAGS := -o pipefail -c
bench-heavy: deps
	$(GO) test -run '^$$' -bench '$(BENCH_HEAVY)' -benchmem -benchtime 1x -count 1 -timeout 90m $(PKGS) | tee bench-heavy.out

## loadtest: the end-to-end load test (100,000 notifications by default).
loadtest: deps build-loadtest
	./bin/herald-loadtest --herald-bin ./$(BIN) $(LOADTEST_FLAGS)

## loadtest-history: issue 23's year of history: 12,000,000 final states seeded into the
## dispatcher's changelog (11 months remembered, the last month shed), then the normal
## 100,000 burst on top, beside the same burst on an empty table (about 25 minutes on 2
## cores). HISTORY sets the states; LOADTEST_FLAGS adds flags (e.g. --api-only 1).
HISTORY ?= 12000000
loadtest-history: deps build-loadtest
	./bin/herald-loadtest --herald-bin ./$(BIN) --history $(HISTORY) --baseline=false $(LOADTEST_FLAGS)

## chaos: the chaos suite: a broker, 2 and 3 `herald run` instances, PostgreSQL and a
## recording provider, with kill -9s, a broker restart, a PostgreSQL stop, a provider outage
## and a zombie (i2-honour, i2-ignore, i3-honour, i3-ignore, about 1 min 30 s each); then
## broker-restart (4 broker kill -9s while publishing, a CPU hog, a provider slow to accept,
## all final within 30 s of the last restart; about 1 min 50 s, 2 min 30 s when it waits out
## its 90 s) and burst-kill (a kill -9 in a send burst, key ignored: at most the send
## concurrency re-called; about 35 s). Asserted at the provider; the whole suite takes about
## 8 minutes on 2 cores. Data, logs and the report
## (summary.md) go to data/chaos/. HERALD_CHAOS_N and HERALD_CHAOS_RUNS narrow it, e.g.
## HERALD_CHAOS_RUNS=broker-restart make chaos; HERALD_CHAOS_HOG sets the hog's cores.
chaos: deps build
	HERALD_CHAOS=1 HERALD_CHAOS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./internal/chaos/

## lint: formatting, vet and staticcheck (pinned, run through the Go module proxy).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

## fuzz: fuzz the request decoder, then the decoders of the state and of Herald's records, a minute each.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./contract
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./contract

## proto: regenerate contract/internal/pb/herald.pb.go from herald.proto with pinned tools
## (buf v1.75.0 and protoc-gen-go v1.36.12, fetched through the Go module proxy; nothing to install).
BUF_VERSION ?= v1.75.0
proto:
	cd contract/internal/pb && $(GO) run github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION) generate

## deploy-check: lint the Helm chart (deploy/helm/herald; its values.schema.json refuses unknown
## keys) and validate what it renders, with its default values and with every option on
## (ci/full-values.yaml): each object decoded
## strictly with the Kubernetes API types pinned in go.mod (k8s.io/api, Kubernetes
## $(KUBE_VERSION)), offline, and checked by deploy/check. Helm is pinned and built once into
## ./bin through the Go module proxy (several minutes the first time; kept while its version
## matches).
HELM_VERSION ?= v3.22.1
KUBE_VERSION ?= 1.37.2
HELM         := bin/helm
CHART        := deploy/helm/herald
CHART_VALUES := $(CHART)/values.yaml $(CHART)/ci/full-values.yaml
deploy-check: SHELL := /bin/bash
deploy-check: .SHELLFLAGS := -o pipefail -c
deploy-check: helm
	$(GO) build -o bin/deploy-check ./deploy/check
	@for v in $(CHART_VALUES); do \
		echo "== $$v"; \
		$(HELM) lint --strict --kube-version $(KUBE_VERSION) -f $$v $(CHART) || exit 1; \
		$(HELM) template herald $(CHART) --kube-version $(KUBE_VERSION) -f $$v | bin/deploy-check || exit 1; \
	done
	@echo "== deploy/check/testdata/bad-values.yaml (must be refused)"
	@out=$$($(HELM) lint --strict --kube-version $(KUBE_VERSION) -f deploy/check/testdata/bad-values.yaml $(CHART) 2>&1); \
	if ! grep -q "additional properties 'replicaCont' not allowed" <<<"$$out"; then \
		echo "$$out"; echo "deploy-check: values.schema.json did not refuse a misspelt key"; exit 1; fi; \
	if ! grep -q "invalid propertyName 'partitions'" <<<"$$out"; then \
		echo "$$out"; echo "deploy-check: values.schema.json did not refuse config.partitions"; exit 1; fi; \
	echo "refused: a misspelt key, and config setting a flag the chart sets"

## helm: install the pinned Helm into ./bin unless that version is there.
helm:
	@if [ "$$($(GO) version -m $(HELM) 2>/dev/null | awk '$$1 == "mod" && $$2 == "helm.sh/helm/v3" {print $$3}')" != "$(HELM_VERSION)" ]; then \
		echo "installing helm $(HELM_VERSION) into bin/ (go install, a few minutes)"; \
		GOBIN=$(CURDIR)/bin $(GO) install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi

clean:
	rm -rf bin data bench.out bench-heavy.out
