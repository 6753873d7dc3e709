package model

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestCheckFits(t *testing.T) {
	file := FileCapacity{Tensors: 100, DataBytes: 1 << 20, ElementBits: 16}
	gpt2 := func(cfg Config) []TensorGroup { return gpt2Groups(cfg, hfKeys) }
	ok := Config{VocabSize: 1000, NCtx: 64, NEmbd: 64, NHead: 4, NLayer: 4, LNEps: 1e-5}
	if err := CheckFits(gpt2(ok), file); err != nil {
		t.Fatalf("a model that fits: %v", err)
	}
	for _, c := range []struct {
		edit func(c *Config)
		keys []string
		unit string
	}{
		{func(c *Config) { c.NLayer = 2_000_000 }, []string{"n_layer"}, "tensors"},
		{func(c *Config) { c.NLayer = 8 }, nil, ""}, // within the slack: left to the per-tensor checks
		{func(c *Config) { c.VocabSize = 1 << 40 }, []string{"vocab_size", "n_embd"}, "bytes"},
		{func(c *Config) { c.NCtx = math.MaxInt }, []string{"n_positions", "n_embd"}, "bytes"},
		{func(c *Config) { c.NEmbd = 1 << 20 }, []string{"vocab_size", "n_embd"}, "bytes"},
		{func(c *Config) { c.NEmbd, c.NLayer = 128, 16 }, []string{"n_layer", "n_embd"}, "bytes"},
	} {
		cfg := ok
		c.edit(&cfg)
		err := CheckFits(gpt2(cfg), file)
		var se *SizeError
		if c.keys == nil {
			if err != nil {
				t.Errorf("%+v: %v", cfg, err)
			}
			continue
		}
		if !errors.As(err, &se) || !slices.Equal(se.Keys, c.keys) || se.Unit != c.unit {
			t.Errorf("%+v: got %v, want a SizeError on %v in %s", cfg, err, c.keys, c.unit)
		}
	}
	neg := []TensorGroup{{Name: "x", Tensors: [][]Dim{{{Key: "n", N: -3}}}}}
	if err := CheckFits(neg, file); err == nil || !strings.Contains(err.Error(), "n = -3 is negative") {
		t.Errorf("negative size: %v", err)
	}
}
