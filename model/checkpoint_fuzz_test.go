package model

import (
	"bytes"
	"errors"
	"runtime/metrics"
	"testing"

	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// The fuzz targets cover the config-to-tensors step, not only the
// containers (which model/tensorfile fuzzes): config.json + safetensors and
// GGUF metadata -> Config -> TensorSpec -> decoded tensors, and the GGUF
// tokenizer. testdata/fuzz holds inputs that once cost gigabytes (an
// n_layer of 2,000,000, a block_count of 2^31) and run as regression tests.

// heapAllocated returns the bytes the process has allocated so far (the
// runtime/metrics twin of MemStats.TotalAlloc, without stopping the world).
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func FuzzLoadHF(f *testing.F) {
	conf, st := hfBytes(f, fuzzCfg, "f16")
	f.Add(conf, st)
	_, st32 := hfBytes(f, fuzzCfg, "f32")
	f.Add(conf, st32)
	f.Add([]byte(`{"n_layer": 2000000, "n_embd": 4, "n_head": 2, "vocab_size": 8, "n_positions": 4}`), st)
	f.Add([]byte(`{"vocab_size": 1099511627776, "n_embd": 4, "n_head": 2, "n_positions": 4, "n_layer": 1}`), st)
	f.Add([]byte(`{}`), st[:len(st)/2])
	f.Fuzz(func(t *testing.T, conf, weights []byte) {
		before := heapAllocated()
		cfg, host, err := loadHF(conf, hfConfigFile, bytes.NewReader(weights), int64(len(weights)), hfWeightsFile, LoadOptions{})
		if got := heapAllocated() - before; got > loadBound(len(conf)+len(weights)) {
			t.Fatalf("loading %d + %d bytes allocated %d", len(conf), len(weights), got)
		}
		if err == nil {
			checkLoaded(t, cfg, host)
		}
	})
}

func FuzzLoadGGUF(f *testing.F) {
	f.Add(ggufBytes(f, fuzzCfg, "f16", GGUFOptions{}))
	f.Add(ggufBytes(f, fuzzCfg, "f32", GGUFOptions{TiedOutput: true}))
	tok := tinyGGUFTokenizer(f)
	withTok := fuzzCfg
	withTok.VocabSize = tok.VocabSize()
	f.Add(ggufBytes(f, withTok, "bf16", GGUFOptions{Tokenizer: tok, TiedOutput: true}))
	// Quantized layer matrices (rows of 32 and 128: whole Q8_0 and Q4_0 blocks).
	qCfg := fuzzCfg
	qCfg.NEmbd = 32
	f.Add(ggufBytes(f, qCfg, "q8_0", GGUFOptions{}))
	f.Add(ggufBytes(f, qCfg, "q4_0", GGUFOptions{TiedOutput: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocated()
		cfg, host, err := LoadGGUFReader(bytes.NewReader(data), int64(len(data)))
		tok, tokErr := tokenizer.LoadGGUFReader(bytes.NewReader(data), int64(len(data)))
		if got := heapAllocated() - before; got > loadBound(len(data)) {
			t.Fatalf("loading %d bytes allocated %d", len(data), got)
		}
		if err == nil {
			checkLoaded(t, cfg, host)
		}
		if tokErr == nil {
			const s = "the cat <|endoftext|> Ω\xff"
			if got := string(tok.Decode(tok.EncodeWithSpecial(s))); got != s {
				t.Fatalf("tokenizer from the file: %q -> %q", s, got)
			}
		} else if !errors.Is(tokErr, tokenizer.ErrNoTokenizer) && tokErr.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
