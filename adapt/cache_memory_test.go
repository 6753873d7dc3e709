package adapt

import (
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
)

// memPrompt is a random prompt over tokens [lo, lo+8) with losses.
func memPrompt(rng *rand.Rand, lo int32, n int) ([]int32, []float32) {
	p := make([]int32, n)
	lp := make([]float32, n-1)
	for j := range p {
		p[j] = lo + int32(rng.IntN(8))
	}
	for j := range lp {
		lp[j] = 3 + float32(rng.Float64())
	}
	return p, lp
}

func TestCacheMemory(t *testing.T) {
	cfg := UniformCache(32)
	m, err := NewCacheMemory(cfg, MemoryConfig{Window: 3, Clusters: 2, Radius: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// A trained pool: each snapshot is the pool of the prompts before it
	// (the last Window of them), with the weights chosen on exactly those.
	var hist [][]int32
	var hl [][]float32
	for i := range 5 {
		p, lp := memPrompt(rng, 0, 10)
		snap, err := m.Admit(2, []float32{1, 0}, p, lp)
		if err != nil {
			t.Fatal(err)
		}
		from := max(0, len(hist)-3)
		var want TokenCounts
		for _, q := range hist[from:] {
			want.Add(q...)
		}
		wantW := CacheWeights{}
		if len(hist) > 0 {
			wantW, _ = ChooseCacheWeights(hist[from:], hl[from:], true, cfg)
		}
		if snap.Key != (MemoryKey{Trained: 2, Run: -1}) || snap.Prompts != len(hist[from:]) || snap.Weights != wantW ||
			snap.Pool.Total != want.Total || !reflect.DeepEqual(counts(snap.Pool), counts(&want)) {
			t.Fatalf("admission %d: snapshot %+v (%v), want %d prompts, weights %+v, counts %v", i, snap, counts(snap.Pool), len(hist[from:]), wantW, counts(&want))
		}
		hist, hl = append(hist, p), append(hl, lp)
	}
	if s := m.Stats(); s.Clusters != 1 || s.Prompts != 3 || s.Tokens != 30 {
		t.Fatalf("stats %+v", s)
	}
	// Gated inputs: leader clustering within the radius, LRU eviction at
	// two run-time clusters.
	p, lp := memPrompt(rng, 8, 6)
	a, _ := m.Admit(-1, []float32{0, 1}, p, lp)
	b, _ := m.Admit(-1, []float32{0.1, 1.1}, p, lp) // within 0.5 of a's centroid: joins it
	c, _ := m.Admit(-1, []float32{5, 5}, p, lp)     // a new cluster
	if a.Key.Run != 0 || b.Key != a.Key || c.Key.Run != 1 || b.Prompts != 1 || a.Prompts != 0 || a.Weights != (CacheWeights{}) {
		t.Fatalf("leader clustering: %+v %+v %+v", a, b, c)
	}
	if _, err := m.Admit(-1, []float32{5, 5.1}, p, lp); err != nil { // c's cluster used last
		t.Fatal(err)
	}
	d, _ := m.Admit(-1, []float32{-5, -5}, p, lp) // a third: evicts a's (least recently used)
	if d.Key.Run != 2 || m.Stats().Evicted != 1 || m.Stats().RunClusters != 2 {
		t.Fatalf("eviction: %+v, stats %+v", d, m.Stats())
	}
	if _, ok := m.Pool(a.Key); ok {
		t.Fatal("the least recently used cluster is still there")
	}
	if x, ok := m.Pool(c.Key); !ok || x.Prompts != 2 {
		t.Fatalf("cluster c: %+v %v", x, ok)
	}
	// No feature: the global pool.
	g, _ := m.Admit(-1, nil, p, lp)
	if g.Key != (MemoryKey{Trained: -1, Run: -1}) {
		t.Fatalf("global key %+v", g.Key)
	}
	// Bad input.
	if _, err := m.Admit(0, nil, []int32{1, 40}, []float32{1}); err == nil {
		t.Fatal("a token outside the vocabulary: no error")
	}
	if _, err := m.Admit(0, nil, []int32{1, 2, 3}, []float32{1}); err == nil {
		t.Fatal("too few losses: no error")
	}
	if _, err := m.Admit(-1, []float32{1, 2, 3}, p, lp); err == nil {
		t.Fatal("a feature of another width: no error")
	}
	if _, err := NewCacheMemory(cfg, MemoryConfig{Window: -1}); err == nil {
		t.Fatal("negative window: no error")
	}
}

// TestCacheMemoryConcurrent admits from several goroutines (run with
// -race): every admission is counted once.
func TestCacheMemoryConcurrent(t *testing.T) {
	m, err := NewCacheMemory(UniformCache(32), MemoryConfig{Window: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 20 {
				p, lp := memPrompt(rng, 0, 5)
				if _, err := m.Admit(g%2, nil, p, lp); err != nil {
					t.Error(err)
				}
				_ = m.Stats()
			}
		}()
	}
	wg.Wait()
	if s := m.Stats(); s.Prompts != 80 || s.Clusters != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func counts(c *TokenCounts) map[int32]float64 {
	out := map[int32]float64{}
	c.Each(func(y int32, n float64) { out[y] = n })
	return out
}

// BenchmarkCacheMemoryAdmit is one admission to a full pool (64 prompts
// of 64 tokens over a GPT-2 vocabulary): the snapshot, the join and the
// weights' re-choice, the host work the server adds per admitted prompt.
func BenchmarkCacheMemoryAdmit(b *testing.B) {
	m, err := NewCacheMemory(UniformCache(50257), MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ps [][]int32
	var ls [][]float32
	for range 128 {
		p, lp := memPrompt(rng, int32(rng.IntN(50000)), 64)
		ps, ls = append(ps, p), append(ls, lp)
	}
	for i := range 64 {
		if _, err := m.Admit(0, nil, ps[i], ls[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Admit(0, nil, ps[i%128], ls[i%128]); err != nil {
			b.Fatal(err)
		}
	}
}

// ChooseCacheWeights (per-position terms computed once) picks exactly the
// pair that minimises its definition: the summed SequenceLoss of every
// member with the other members' prompts as the pool.
func TestChooseCacheWeightsDefinition(t *testing.T) {
	cfg := UniformCache(40)
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 20 {
		n := 1 + rng.IntN(6)
		var ps [][]int32
		var ls [][]float32
		for range n {
			p, lp := memPrompt(rng, int32(rng.IntN(30)), 1+rng.IntN(12))
			for j := range lp {
				lp[j] = float32(rng.Float64() * 5)
			}
			ps, ls = append(ps, p), append(ls, lp)
		}
		usePool := trial%3 != 0
		got, err := ChooseCacheWeights(ps, ls, usePool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, wantLoss := CacheWeights{}, math.Inf(1)
		for _, o := range cfg.Grid {
			for _, q := range cfg.Grid {
				if o+q > cfg.MaxTotal || (q > 0 && (!usePool || n < 2)) {
					continue
				}
				w, sum := CacheWeights{Own: o, Pool: q}, 0.0
				for i, p := range ps {
					var pool TokenCounts
					for k, r := range ps {
						if k != i {
							pool.Add(r...)
						}
					}
					l, _ := w.SequenceLoss(p, ls[i], 0, len(p)-1, &pool, cfg)
					sum += l
				}
				if sum < wantLoss {
					want, wantLoss = w, sum
				}
			}
		}
		if got != want {
			t.Fatalf("trial %d (%d prompts): chose %+v, the definition %+v", trial, n, got, want)
		}
	}
}

// With WithSelf an input's weights are chosen over its pool's prompts and
// its own: a new pool gets its prompt's own-only weight.
func TestCacheMemoryWithSelf(t *testing.T) {
	cfg := UniformCache(32)
	m, err := NewCacheMemory(cfg, MemoryConfig{WithSelf: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ps [][]int32
	var ls [][]float32
	for i := range 4 {
		p, lp := memPrompt(rng, 0, 12)
		snap, err := m.Admit(0, nil, p, lp)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ChooseCacheWeights(append(ps, p), append(ls, lp), true, cfg)
		if snap.Weights != want || snap.Prompts != i || (i == 0 && want.Own == 0) {
			t.Fatalf("admission %d: %+v, want weights %+v over the pool and itself", i, snap, want)
		}
		ps, ls = append(ps, p), append(ls, lp)
	}
}
