GO       ?= go
BIN      := bin/handler
PKGS     := ./...

.PHONY: build test lint vet staticcheck bench

build:
	$(GO) build -o $(BIN) ./handler

vet:
	$(GO) vet $(PKGS)

# staticcheck at a pinned release (0.8.2 = staticcheck 2026.2.2), installed
# from the Go module proxy into .cache/bin, not a go.mod dependency. The
# binary's name carries the release and the Go version that built it, so a
# new pin or a new Go toolchain installs afresh and an existing one is reused.
STATICCHECK_VERSION := v0.8.2
GOVERSION := $(shell $(GO) env GOVERSION)
STATICCHECK := $(CURDIR)/.cache/bin/staticcheck-$(STATICCHECK_VERSION)-$(GOVERSION)/staticcheck

$(STATICCHECK):
	GOBIN=$(@D) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Its default checks, plus ST1000 so that every package comment names its
# package (package renames leave stale ones). Given here rather than in a
# staticcheck.conf: the repository's top level is fixed.
STATICCHECK_CHECKS := inherit,ST1000

staticcheck: $(STATICCHECK)
	$(STATICCHECK) -checks $(STATICCHECK_CHECKS) $(PKGS)

# go vet, the gofmt check and staticcheck; a finding that must stay is
# silenced in the code with //lint:ignore CHECK reason, never here.
lint: vet staticcheck
	@out=$$(gofmt -l handler internal); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit, integration (ACR emulator, Azurite) and end-to-end tests.
test: lint fuzz
	.ci/azurite run $(GO) test -race -count=1 $(PKGS)

# Every performance figure in one table, beside its goal and a sequential
# baseline measured in the same run (~3-4 min; Azurite for the Table-store
# fan-out). ARGS=-json for machines, ARGS='-only governance,plan' for some.
bench:
	.ci/azurite run $(GO) run ./internal/testbed/benchmarks/cmd/benchtable $(ARGS)

# Deployment package: dist/acrpurge.zip with the linux/amd64 handler (mode
# 0755), host.json and one folder per function at its root. Built by Go code
# (internal/packaging), so no zip program is needed.
.PHONY: package clean-dist

package:
	$(GO) run ./internal/packaging/cmd/mkzip -go $(GO) -root . -out dist/acrpurge.zip

clean-dist:
	rm -rf dist

# The whole system on this machine, with no Azure account: the ACR emulator
# seeded with a demo registry, an in-process queue and a Functions-host
# stand-in. Flags go in ARGS, e.g. make run ARGS=--dry-run; see
# `go run ./handler local -h`.
.PHONY: run
run:
	$(GO) run ./handler local $(ARGS)

# The README's screenshots of the Runs function's HTML pages: the local stack
# runs a demo (a push, a dry run, the nightly purge of 24 repositories) and
# headless Chromium (apt-get install -y chromium) captures the list of runs
# and the nightly run's page into internal/runs/screenshots/.
.PHONY: screenshots
screenshots:
	$(GO) run ./internal/testbed/browser/cmd/screenshots -out internal/runs/screenshots

# Go fuzz targets, each for a fixed number of executions (one target per
# command, as go test -fuzz requires). Part of `make test`; raise FUZZTIME to
# dig deeper. A count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can fail a clean run with "context deadline exceeded" when the
# time runs out under load (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 5000x
FUZZ_TARGETS := \
	./internal/queue:FuzzDecode \
	./internal/policy:FuzzParse \
	./internal/policy:FuzzSplitFilter \
	./internal/policy:FuzzParseAgo \
	./internal/checkpoint:FuzzEscapeKey \
	./internal/funchost:FuzzPayload \
	./internal/ncrontab:FuzzSchedule

.PHONY: fuzz chaos

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The fault-injection suite at a larger scale, with random seeds and fault
# rates; `ACRPURGE_CHAOS_SEED=N make chaos` reproduces the subtests of seed N.
chaos:
	ACRPURGE_CHAOS_LONG=1 .ci/azurite run $(GO) test -race -count=1 -run Chaos -timeout 30m ./internal/testbed/chaos/
