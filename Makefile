# ibex: run `make help` for the targets.
.DEFAULT_GOAL := help
GO ?= go
export PGHOST ?= 127.0.0.1
export PGPORT ?= 5432
export PGUSER ?= postgres

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_\/-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# As the container image: static and without symbol tables, which starts a short run's
# process about 2-4 ms sooner (issue 18; fewer pages to fault in, no dynamic loader).
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w'

.PHONY: build
build: ## build ibex, runonce and scheduler into bin/ (static, stripped: as the container image)
	$(GOBUILD) -o bin/ ./cmd/...

.PHONY: demo
demo: ## the seed demo end to end on the local PostgreSQL (5 dbs, 4 x 10,000 pgbench tx, one kick)
	./scripts/demo.sh

.PHONY: demo-counters
demo-counters: ## the seed demo with counters on abalance, bbalance and tbalance, then a check that every db's sums equal pgbench's deltas
	COUNTERS=1 ./scripts/demo.sh

.PHONY: demo-sinks
demo-sinks: ## the seed demo into MariaDB, SQLite, Redis and SQL-file targets, one kick, then a check that each holds the sources' rows
	./scripts/demo-sinks.sh

.PHONY: test
test: ## the whole test suite against the local PostgreSQL (unit, integration, fault tests)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

# The benchmark uses the local unix socket when there is one and PGHOST was not given (as
# Bucardo's reference figures did): TCP to 127.0.0.1 negotiates TLS here.
BENCH_PGHOST := $(if $(filter environment command line,$(origin PGHOST)),$(PGHOST),$(shell [ -S /var/run/postgresql/.s.PGSQL.$(PGPORT) ] && echo /var/run/postgresql || echo $(PGHOST)))

.PHONY: bench
bench: ## the benchmark table: ibex vs raw COPY floor and Bucardo (measured when installed)
	PGHOST=$(BENCH_PGHOST) $(GO) run ./bench $(BENCH_ARGS)

.PHONY: bench-latency
bench-latency: ## autokick commit-to-visible latency under pgbench -R 300 (IBEX_BENCH_TPS, IBEX_BENCH_SECONDS), a run's round trips over a 10 ms network (counted exactly by TestRunRoundTrips), and one-row kicks from process start to exit (bench section small)
	IBEX_BENCH=1 $(GO) test -count=1 -run TestAutokickLatency -v ./internal/scheduler/ 2>&1 | grep -E 'latency_test.go|^(ok|FAIL|---)'
	IBEX_BENCH=1 $(GO) test -count=1 -run TestRemoteRunLatency -v ./internal/faults/ 2>&1 | grep -E 'remote_test.go|^(ok|FAIL|---)'
	$(GO) test -count=1 -run TestRunRoundTrips -v ./internal/faults/ 2>&1 | grep -E 'trips_test.go|^(ok|FAIL|---)'
	PGHOST=$(BENCH_PGHOST) $(GO) run ./bench -sections small -bucardo off $(BENCH_ARGS)

.PHONY: lint
lint: ## gofmt, go vet and terraform fmt
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@if command -v terraform >/dev/null; then terraform fmt -check -recursive terraform; else echo "terraform not installed: skipping terraform fmt"; fi

.PHONY: lambda
lambda: ## the AWS Lambda bootstrap for provided.al2023 (linux/arm64) in dist/ibex-lambda.zip
	mkdir -p dist
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o dist/bootstrap ./lambda
	touch -d @0 dist/bootstrap
	cd dist && rm -f ibex-lambda.zip && (command -v zip >/dev/null && zip -q ibex-lambda.zip bootstrap || python3 -c "import zipfile; z=zipfile.ZipFile('ibex-lambda.zip','w',zipfile.ZIP_DEFLATED); z.write('bootstrap'); z.close()")

.PHONY: clean
clean: ## remove build output
	rm -rf bin dist
