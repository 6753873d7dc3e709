package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// Small configurations, including sizes that are not multiples of 4.
var testConfigs = []Config{
	{VocabSize: 61, NCtx: 24, NEmbd: 12, NHead: 3, NLayer: 2, LNEps: 1e-5},
	{VocabSize: 257, NCtx: 33, NEmbd: 30, NHead: 5, NLayer: 1, LNEps: 1e-5},
	{VocabSize: 1000, NCtx: 64, NEmbd: 64, NHead: 4, NLayer: 3, LNEps: 1e-5},
}

func newModel(t *testing.T, b gpu.Backend, cfg Config, seed uint64, dt gpu.DType) *Model {
	t.Helper()
	host := RandomInit(cfg, seed)
	// Random (not unit/zero) layernorm and bias values exercise every input.
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range host {
		if len(host[i].Shape) == 1 {
			for j := range host[i].Data {
				host[i].Data[j] += float32(rng.NormFloat64() * 0.1)
			}
		}
	}
	w, err := Upload(b, cfg, host, dt)
	if err != nil {
		t.Fatal(err)
	}
	return &Model{Cfg: cfg, W: w, B: b}
}

func randomTokens(rng *rand.Rand, lens []int, v int) [][]int32 {
	out := make([][]int32, len(lens))
	for i, n := range lens {
		for j := 0; j < n; j++ {
			out[i] = append(out[i], int32(rng.IntN(v)))
		}
	}
	return out
}

// rowsOf extracts the logits of sequence b's first n positions from (B, Tq, V).
func rowsOf(logits []float32, b, n, tq, v int) []float32 {
	return logits[b*tq*v : (b*tq+n)*v]
}

func forwardAll(t *testing.T, m *Model, lens []int, toks [][]int32) []float32 {
	t.Helper()
	c, err := m.NewCache(len(toks), m.Cfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(c)
	lg, err := m.Forward(c, toks)
	if err != nil {
		t.Fatal(err)
	}
	defer m.B.Free(lg)
	out, err := m.B.ReadF32(lg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWebGPUForwardMatchesReference: ragged batched prefill logits from the
// WGSL kernels equal the reference forward on random small GPT-2s.
func TestWebGPUForwardMatchesReference(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for ci, cfg := range testConfigs {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			t.Run(fmt.Sprintf("cfg%d/%v", ci, dt), func(t *testing.T) {
				lens := []int{cfg.NCtx / 2, 1, 5, cfg.NCtx / 3}
				toks := randomTokens(rng, lens, cfg.VocabSize)
				want := forwardAll(t, newModel(t, ref.New(), cfg, seed, dt), lens, toks)
				got := forwardAll(t, newModel(t, w, cfg, seed, dt), lens, toks)
				tq := cfg.NCtx / 2
				for b, n := range lens {
					if err := conformance.AllClose(rowsOf(got, b, n, tq, cfg.VocabSize), rowsOf(want, b, n, tq, cfg.VocabSize), 2e-4, 2e-3); err != nil {
						t.Errorf("sequence %d: %v", b, err)
					}
				}
			})
		}
	}
}

// TestKVCacheDecodeEqualsRecompute: prefill then token-by-token decode
// gives the same logits as one full forward of the whole sequences, and
// each sequence of a batch equals the same sequence run alone.
func TestKVCacheDecodeEqualsRecompute(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	cfg := testConfigs[0]
	for _, b := range []gpu.Backend{ref.New(), w} {
		m := newModel(t, b, cfg, seed, gpu.F32)
		total := []int{9, 14, 4}
		full := randomTokens(rng, total, cfg.VocabSize)
		want := forwardAll(t, m, total, full)
		tqFull := 14
		// Prefill different prefix lengths, then decode one token at a time
		// with the sequences at different positions.
		c, err := m.NewCache(3, cfg.NCtx)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []int{3, 8, 1}
		var step [][]int32
		for i := range full {
			step = append(step, full[i][:prefix[i]])
		}
		lg, err := m.Forward(c, step)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := b.ReadF32(lg)
		b.Free(lg)
		for i := range full {
			if err := conformance.AllClose(rowsOf(got, i, prefix[i], 8, cfg.VocabSize), rowsOf(want, i, prefix[i], tqFull, cfg.VocabSize), 1e-4, 1e-3); err != nil {
				t.Errorf("%s: prefill of sequence %d: %v", b.Name(), i, err)
			}
		}
		for {
			step = make([][]int32, 3)
			any := false
			for i := range full {
				if c.Len[i] < total[i] {
					step[i] = full[i][c.Len[i] : c.Len[i]+1]
					any = true
				}
			}
			if !any {
				break
			}
			before := append([]int(nil), c.Len...)
			lg, err := m.Forward(c, step)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := b.ReadF32(lg)
			b.Free(lg)
			for i := range full {
				if len(step[i]) == 0 {
					continue
				}
				p := before[i]
				wantRow := want[(i*tqFull+p)*cfg.VocabSize : (i*tqFull+p+1)*cfg.VocabSize]
				if err := conformance.AllClose(got[i*cfg.VocabSize:(i+1)*cfg.VocabSize], wantRow, 1e-4, 1e-3); err != nil {
					t.Errorf("%s: decode of sequence %d at position %d: %v", b.Name(), i, p, err)
				}
			}
		}
		m.FreeCache(c)
		// Each sequence alone equals its row of the batch.
		for i := range full {
			alone := forwardAll(t, m, total[i:i+1], full[i:i+1])
			if err := conformance.AllClose(alone, rowsOf(want, i, total[i], tqFull, cfg.VocabSize), 1e-5, 1e-4); err != nil {
				t.Errorf("%s: sequence %d alone vs in the batch: %v", b.Name(), i, err)
			}
		}
	}
}

func TestForwardRejectsBadInput(t *testing.T) {
	cfg := testConfigs[0]
	m := newModel(t, ref.New(), cfg, 1, gpu.F32)
	c, err := m.NewCache(2, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(c, [][]int32{{1}}); err == nil {
		t.Error("wrong number of sequences accepted")
	}
	if _, err := m.Forward(c, [][]int32{{}, {}}); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := m.Forward(c, [][]int32{{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1}}); err == nil {
		t.Error("sequence longer than the cache accepted")
	}
	if _, err := m.Forward(c, [][]int32{{int32(cfg.VocabSize)}, {1}}); err == nil {
		t.Error("token outside the vocabulary accepted")
	}
	if c.Len[0] != 0 || c.Len[1] != 0 {
		t.Errorf("a rejected forward changed the cache lengths: %v", c.Len)
	}
	if _, err := m.NewCache(1, cfg.NCtx+1); err == nil {
		t.Error("cache beyond the context accepted")
	}
}
