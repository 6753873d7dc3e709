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
// GPT-2 whose width takes every fused path of the WebGPU backend give the
// reference forward's logits at every step, in each way the backend can
// run them, and a decode step records the known number of dispatches in
// one pass:
//   - the texture matmuls with the epilogue fusions (C a multiple of 32:
//     the producers' texture copies of the matmuls' x, decode attention's
//     included, attn.qkv with its KV-cache store and mlp.fc with its GELU
//     in one kernel): 7 per layer (qkv + KV store, attention, proj, add +
//     layer norm, fc + GELU, fc2, add + layer norm) and 4 more (embedding,
//     the first layer norm, the final layer norm, the vocabulary
//     projection; every sequence adds one token, so no Rows);
//   - the same with the epilogues as separate ops (the CPU default);
//   - the GPU default (MatMulTile: the cooperative mat-vec at decode) and
//     the mat-vec at every M (MatMulCoop), with the block fusions
//     (FusesBlock): 4 per layer (layer norm + qkv + KV store + attention,
//     proj + residual, layer norm + fc + GELU, fc2 + residual) and 2 more
//     (embedding, final layer norm + vocabulary projection).
func TestFusedDecodeMatchesReference(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	cfg := testConfigs[2]
	variant := w.MatMulVariant
	defer func() { w.MatMulVariant, w.FuseEpilogues = variant, true }()
	modes := []struct {
		name    string
		variant string
		fuse    bool
		block   bool // the count is the block fusions' (else the texture matmuls')
		want    int  // dispatches a decode step; 0: not checked
	}{
		{"fused", variant, true, false, 7*cfg.NLayer + 4},
		{"epilogues apart", variant, false, false, 0},
		{"gpu default, block fusions", gpu.MatMulTile, true, true, 4*cfg.NLayer + 2},
		{"mat-vec, block fusions", gpu.MatMulCoop, true, true, 4*cfg.NLayer + 2},
	}
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		t.Run(dt.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			prompt := randomTokens(rng, []int{5, 1, 9}, cfg.VocabSize)
			want := decodeLogits(t, newModel(t, ref.New(), cfg, seed, dt), prompt, 4)
			mw := newModel(t, w, cfg, seed, dt)
			for _, md := range modes {
				w.MatMulVariant, w.FuseEpilogues = md.variant, md.fuse
				got := decodeLogits(t, mw, prompt, 4)
				for s := range want {
					if err := conformance.AllClose(got[s], want[s], 2e-4, 2e-3); err != nil {
						t.Errorf("%s, step %d: %v", md.name, s, err)
					}
				}
				if md.want == 0 || md.block != w.FusesBlock(3, mw.W.Layers[0].AttnW) || !md.block && md.variant != gpu.MatMulTex {
					continue // the texture counts need the texture variant
				}
				if d := decodeStepWork(t, w, mw); d.Dispatches != uint64(md.want) || d.Passes != 1 {
					t.Errorf("%s: a decode step recorded %+v; want %d dispatches in one pass", md.name, d, md.want)
				}
			}
		})
	}
}

// decodeStepWork returns what the second of two decode steps of three
// sequences records (the first makes the KV caches' texture copies).
func decodeStepWork(t *testing.T, w *gpu.WebGPU, mw *Model) gpu.Counts {
	t.Helper()
	c, err := mw.NewCache(3, mw.Cfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer mw.FreeCache(c)
	var d gpu.Counts
	for i := 0; i < 2; i++ {
		c0 := w.Counts()
		lg, err := mw.ForwardLast(c, [][]int32{{1}, {2}, {3}})
		if err != nil {
			t.Fatal(err)
		}
		mw.B.Free(lg)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		d = w.Counts().Sub(c0)
	}
	return d
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
