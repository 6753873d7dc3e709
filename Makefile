# Chameleon: the two entry points are `make run` and `make test`; each
# installs what is missing first (scripts/deps.sh) and is quick once it is.
GO := $(shell scripts/deps.sh | tail -n 1)
ifeq ($(GO),)
$(error scripts/deps.sh could not provide a Go toolchain)
endif
BIN := bin/chameleon

.PHONY: run test build vet bench fuzz clean

## run: the main job (until the default model lands: list adapters, kernel self-check)
run: build
	./$(BIN) devices
	./$(BIN) selfcheck

## test: every test, the GPU half on the best adapter (lavapipe without a GPU); fails without one
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

build:
	$(GO) build -o $(BIN) ./cmd/chameleon

## bench: kernel benchmarks on the adapter, with gonum's Sgemm in the same run
bench:
	$(GO) test ./gpu -run '^$$' -bench . -benchtime 5x

## fuzz: a short fuzzing session of each parser
fuzz:
	$(GO) test ./model -run '^$$' -fuzz FuzzTokenizerRoundTrip -fuzztime 60s

clean:
	rm -rf bin
