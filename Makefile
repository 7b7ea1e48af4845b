GO       ?= go
BIN      := bin/handler
PKGS     := ./...

.PHONY: build test lint vet bench

build:
	$(GO) build -o $(BIN) ./handler

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -l handler internal); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit, integration (ACR emulator, Azurite) and end-to-end tests.
test: lint
	.ci/azurite run $(GO) test -race -count=1 $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

# Deployment package: dist/acrpurge.zip with the linux/amd64 handler (mode
# 0755), host.json and one folder per function at its root. Built by Go code
# (internal/packaging), so no zip program is needed.
.PHONY: package clean-dist

package:
	$(GO) run ./internal/packaging/cmd/mkzip -go $(GO) -root . -out dist/acrpurge.zip

clean-dist:
	rm -rf dist
