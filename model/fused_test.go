package model

import (
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestFusedDecodeMatchesReference: a ragged prefill then decode steps of a
// GPT-2 whose width takes every fused path of the WebGPU backend (C a
// multiple of 32: the producers' texture copies of the matmuls' x, decode
// attention's included, attn.qkv with its KV-cache store and mlp.fc with
// its GELU in one kernel) give the
// reference forward's logits at every step; and under the texture
// matmuls a decode step records the known number of dispatches: 7 per
// layer (qkv + KV store, attention, proj, add + layer norm, fc + GELU,
// fc2, add + layer norm) and 5 more (embedding, the first layer norm, the last
// rows, the final layer norm, the vocabulary projection), in one pass.
func TestFusedDecodeMatchesReference(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	cfg := testConfigs[2]
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		t.Run(dt.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			prompt := randomTokens(rng, []int{5, 1, 9}, cfg.VocabSize)
			want := decodeLogits(t, newModel(t, ref.New(), cfg, seed, dt), prompt, 4)
			mw := newModel(t, w, cfg, seed, dt)
			got := decodeLogits(t, mw, prompt, 4)
			for s := range want {
				if err := conformance.AllClose(got[s], want[s], 2e-4, 2e-3); err != nil {
					t.Errorf("step %d: %v", s, err)
				}
			}
			// The default decode (epilogues as separate ops) too.
			w.FuseEpilogues = false
			plain := decodeLogits(t, mw, prompt, 4)
			w.FuseEpilogues = true
			for s := range want {
				if err := conformance.AllClose(plain[s], want[s], 2e-4, 2e-3); err != nil {
					t.Errorf("epilogues apart, step %d: %v", s, err)
				}
			}
			if w.MatMulVariant != gpu.MatMulTex {
				return
			}
			c, err := mw.NewCache(3, cfg.NCtx)
			if err != nil {
				t.Fatal(err)
			}
			defer mw.FreeCache(c)
			step := [][]int32{{1}, {2}, {3}}
			for i := 0; i < 2; i++ { // the first step makes the KV cache's texture copies
				c0 := w.Counts()
				lg, err := mw.ForwardLast(c, step)
				if err != nil {
					t.Fatal(err)
				}
				mw.B.Free(lg)
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				d := w.Counts().Sub(c0)
				if want := uint64(7*cfg.NLayer + 5); i == 1 && (d.Dispatches != want || d.Passes != 1) {
					t.Errorf("a decode step recorded %+v; want %d dispatches in one pass", d, want)
				}
			}
		})
	}
}

// decodeLogits prefills prompt, then runs steps decode steps on m, each
// sequence fed fixed tokens (so that every backend follows one path),
// returning every step's last-position logits, the prefill's first.
func decodeLogits(t *testing.T, m *Model, prompt [][]int32, steps int) [][]float32 {
	t.Helper()
	c, err := m.NewCache(len(prompt), m.Cfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(c)
	var out [][]float32
	in := prompt
	for s := 0; s <= steps; s++ {
		lg, err := m.ForwardLast(c, in)
		if err != nil {
			t.Fatal(err)
		}
		v, err := m.B.ReadF32(lg)
		m.B.Free(lg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
		in = make([][]int32, len(prompt))
		for b := range in {
			in[b] = []int32{int32((s*7 + b*13) % m.Cfg.VocabSize)}
		}
	}
	return out
}
