package adapt

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// memHidden is n unit rows of width c near one of four directions (so
// that keys of one prompt resemble another's), seeded by rng.
func memHidden(rng *rand.Rand, n, c int) []float32 {
	h := make([]float32, n*c)
	for r := range n {
		d := rng.IntN(4)
		for k := range c {
			h[r*c+k] = float32(0.6 * rng.NormFloat64())
			if k == d {
				h[r*c+k] += 2
			}
		}
	}
	return UnitRows(h, c)
}

// fromScratch is each member's terms built by PoolTerms with the other
// members as its pools.
func fromScratch(t *testing.T, ps [][]int32, ls, hs [][]float32, c int, cfg CacheConfig) []*MixTerms {
	var out []*MixTerms
	for i := range ps {
		var others []PoolPrompt
		for j := range ps {
			if j != i {
				others = append(others, PoolPrompt{Tokens: ps[j], Hidden: hs[j]})
			}
		}
		tm, err := PoolTerms(ps[i], ls[i], hs[i], len(ps[i])-1, c, others, nil, cfg, DefaultThetas)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tm)
	}
	return out
}

// closeTerms reports the first position where a and b differ by more
// than 1e-9 relative (a NaN differs from everything).
func closeTerms(a, b []float64) (int, bool) {
	if len(a) != len(b) {
		return 0, false
	}
	for j := range a {
		if !(math.Abs(a[j]-b[j]) <= 1e-9*(1+math.Abs(b[j]))) {
			return j, false
		}
	}
	return 0, true
}

// The memory's incremental terms equal PoolTerms' from scratch over the
// members it keeps, after joins and after evictions by the window and by
// the key bound; each snapshot is the pool before the prompt joined (its
// keys those members' hidden states), and its weights are
// ChooseMixWeights over the pool with the prompt in.
//
// Over 80 lines: one admission loop checking the snapshot, the members
// kept, every member's terms and the weights.
func TestCacheMemoryNeuralIncremental(t *testing.T) {
	const c, window, maxKeys = 8, 4, 30
	cfg := UniformCache(32)
	m, err := NewCacheMemory(cfg, MemoryConfig{Window: window, WithSelf: true, Width: c, NeuralKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ps [][]int32
	var ls, hs [][]float32
	keyEvicted, winEvicted := false, false
	for i := range 14 {
		n := 3 + rng.IntN(7)
		if i == 9 {
			n = maxKeys + 5 // longer than the bound alone: kept, every other member evicted
		}
		p, lp := memPrompt(rng, 0, n)
		h := memHidden(rng, n-1, c)
		snap, err := m.AdmitHidden(-1, nil, p, lp, h)
		if err != nil {
			t.Fatal(err)
		}
		var want NeuralKeys
		want.C = c
		var cnt TokenCounts
		for j := range ps {
			_ = want.Add(hs[j], ps[j][1:])
			cnt.Add(ps[j]...)
		}
		if snap.Prompts != len(ps) || snap.Keys.Len() != want.Len() || !slices.Equal(snap.Keys.K, want.K) ||
			!slices.Equal(snap.Keys.V, want.V) || !reflect.DeepEqual(counts(snap.Pool), counts(&cnt)) {
			t.Fatalf("admission %d: snapshot of %d prompts, %d keys; want the %d prompts before it, %d keys", i, snap.Prompts, snap.Keys.Len(), len(ps), want.Len())
		}
		ps, ls, hs = append(ps, p), append(ls, lp), append(hs, h)
		terms := fromScratch(t, ps, ls, hs, c, cfg)
		multi := len(ps) > 1
		wantW := ChooseMixWeights(terms, MixChoice{Own: true, Pool: multi, NeuralOwn: true, NeuralPool: multi}, cfg, DefaultThetas)
		if snap.Weights != wantW {
			got, best := 0.0, 0.0
			for _, tm := range terms {
				got += snap.Weights.MixLoss(tm, 0, len(tm.P))
				best += wantW.MixLoss(tm, 0, len(tm.P))
			}
			if math.Abs(got-best) > 1e-9*best {
				t.Fatalf("admission %d: weights %+v (loss %g), from scratch %+v (loss %g)", i, snap.Weights, got, wantW, best)
			}
		}
		// The members the memory keeps after the join.
		keys := 0
		for _, h := range hs {
			keys += len(h) / c
		}
		for len(ps) > window || (len(ps) > 1 && keys > maxKeys) {
			if len(ps) > window {
				winEvicted = true
			} else {
				keyEvicted = true
			}
			keys -= len(hs[0]) / c
			ps, ls, hs = ps[1:], ls[1:], hs[1:]
		}
		cl := m.global
		if len(cl.nm) != len(ps) || cl.keys != keys {
			t.Fatalf("admission %d: %d members and %d keys kept, want %d and %d", i, len(cl.nm), cl.keys, len(ps), keys)
		}
		terms = fromScratch(t, ps, ls, hs, c, cfg)
		for j, nm := range cl.nm {
			cl.counts.Remove(ps[j]...)
			got := nm.terms(&cl.counts, cfg)
			cl.counts.Add(ps[j]...)
			for ti := range DefaultThetas {
				if at, ok := closeTerms(got.NPool[ti], terms[j].NPool[ti]); !ok {
					t.Fatalf("admission %d, member %d, theta %g: incremental pool term %v at %d, from scratch %v", i, j, DefaultThetas[ti], got.NPool[ti], at, terms[j].NPool[ti])
				}
				if _, ok := closeTerms(got.NOwn[ti], terms[j].NOwn[ti]); !ok {
					t.Fatalf("admission %d, member %d: own terms differ", i, j)
				}
			}
			for _, x := range [][2][]float64{{got.P, terms[j].P}, {got.UOwn, terms[j].UOwn}, {got.UPool, terms[j].UPool}} {
				if _, ok := closeTerms(x[0], x[1]); !ok {
					t.Fatalf("admission %d, member %d: token terms differ", i, j)
				}
			}
		}
		if s := m.Stats(); s.Keys != keys || s.Prompts != len(ps) {
			t.Fatalf("admission %d: stats %+v, want %d keys, %d prompts", i, s, keys, len(ps))
		}
	}
	if !keyEvicted || !winEvicted {
		t.Fatalf("evicted by keys %v, by the window %v: the test should exercise both", keyEvicted, winEvicted)
	}
}

// Without WithSelf a snapshot carries the pool's weights chosen on its
// prompts before the join; Pool reports the weights after it.
func TestCacheMemoryNeuralPoolWeights(t *testing.T) {
	const c = 6
	cfg := UniformCache(32)
	m, err := NewCacheMemory(cfg, MemoryConfig{Width: c})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var ps [][]int32
	var ls, hs [][]float32
	for i := range 4 {
		p, lp := memPrompt(rng, 0, 9)
		h := memHidden(rng, 8, c)
		snap, err := m.AdmitHidden(3, nil, p, lp, h)
		if err != nil {
			t.Fatal(err)
		}
		want := CacheWeights{}
		if len(ps) > 0 {
			multi := len(ps) > 1
			want = ChooseMixWeights(fromScratch(t, ps, ls, hs, c, cfg), MixChoice{Own: true, Pool: multi, NeuralOwn: true, NeuralPool: multi}, cfg, DefaultThetas)
		}
		if snap.Weights != want {
			t.Fatalf("admission %d: weights %+v, want %+v", i, snap.Weights, want)
		}
		ps, ls, hs = append(ps, p), append(ls, lp), append(hs, h)
	}
	got, ok := m.Pool(MemoryKey{Trained: 3, Run: -1})
	want := ChooseMixWeights(fromScratch(t, ps, ls, hs, c, cfg), MixChoice{true, true, true, true}, cfg, DefaultThetas)
	if !ok || got.Weights != want || got.Keys.Len() != 4*8 {
		t.Fatalf("pool %+v (%v), want weights %+v and 32 keys", got.Weights, ok, want)
	}
}

func TestCacheMemoryNeuralRefusals(t *testing.T) {
	cfg := UniformCache(32)
	if _, err := NewCacheMemory(cfg, MemoryConfig{NeuralKeys: 10}); err == nil {
		t.Fatal("neural keys without a width: accepted")
	}
	if _, err := NewCacheMemory(cfg, MemoryConfig{Width: -1}); err == nil {
		t.Fatal("a negative width: accepted")
	}
	m, err := NewCacheMemory(cfg, MemoryConfig{Width: 4})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	p, lp := memPrompt(rng, 0, 5)
	if _, err := m.Admit(-1, nil, p, lp); err == nil {
		t.Fatal("a neural memory admitted a prompt without hidden states")
	}
	if _, err := m.AdmitHidden(-1, nil, p, lp, make([]float32, 3*4)); err == nil {
		t.Fatal("3 hidden rows for 4 positions: accepted")
	}
	tok, err := NewCacheMemory(cfg, MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.AdmitHidden(-1, nil, p, lp, memHidden(rng, 4, 4)); err == nil {
		t.Fatal("a token memory took hidden states")
	}
	if s, err := m.AdmitHidden(-1, nil, p, lp, memHidden(rng, 4, 4)); err != nil || s.Keys == nil || s.Keys.Len() != 0 {
		t.Fatalf("first admission: %v, %+v", err, s.Keys)
	}
}

// BenchmarkCacheMemoryAdmitNeural is one admission to a full pool of the
// default bound (2048 keys: 32 prompts of 65 tokens, hidden width 256, the
// default model's), the weights chosen with the prompt in.
func BenchmarkCacheMemoryAdmitNeural(b *testing.B) {
	const c, n = 256, 65
	m, err := NewCacheMemory(UniformCache(4096), MemoryConfig{WithSelf: true, Width: c})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ps [][]int32
	var ls, hs [][]float32
	for range 64 {
		p, lp := memPrompt(rng, int32(rng.IntN(4000)), n)
		ps, ls, hs = append(ps, p), append(ls, lp), append(hs, memHidden(rng, n-1, c))
	}
	for i := range 40 {
		if _, err := m.AdmitHidden(-1, nil, ps[i], ls[i], hs[i]); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if _, err := m.AdmitHidden(-1, nil, ps[i%64], ls[i%64], hs[i%64]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// A member whose pool lost keys much closer to its queries than those
// left (the same prompt sent many times, then other text) keeps exact
// terms: subtracting the evicted keys' large sums would leave rounding
// residue far above what is left, and the memory recomputes such a
// member's sums instead.
func TestCacheMemoryNeuralEvictCancellation(t *testing.T) {
	const c = 4
	cfg := UniformCache(32)
	m, err := NewCacheMemory(cfg, MemoryConfig{Window: 3, WithSelf: true, Width: c})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	near := func(n int, dir float32) []float32 { // rows close to dir * e1
		h := make([]float32, n*c)
		for r := range n {
			h[r*c] = dir
			h[r*c+1+rng.IntN(c-1)] = 1e-3 * float32(rng.Float64())
		}
		return UnitRows(h, c)
	}
	var ps [][]int32
	var ls, hs [][]float32
	admit := func(n int, dir float32) {
		p, lp := memPrompt(rng, 0, n)
		h := near(n-1, dir)
		if _, err := m.AdmitHidden(-1, nil, p, lp, h); err != nil {
			t.Fatal(err)
		}
		ps, ls, hs = append(ps, p), append(ls, lp), append(hs, h)
		if len(ps) > 3 {
			ps, ls, hs = ps[1:], ls[1:], hs[1:]
		}
	}
	admit(30, 1) // keys on e1, evicted first
	admit(8, 1)  // the member whose queries sit on e1
	admit(8, -1) // far keys
	admit(8, -1) // evicts the first: the second's pool is left with keys at similarity -1
	cl := m.global
	terms := fromScratch(t, ps, ls, hs, c, cfg)
	for j, nm := range cl.nm {
		cl.counts.Remove(ps[j]...)
		got := nm.terms(&cl.counts, cfg)
		cl.counts.Add(ps[j]...)
		for ti := range DefaultThetas {
			if at, ok := closeTerms(got.NPool[ti], terms[j].NPool[ti]); !ok {
				t.Fatalf("member %d, theta %g, position %d: incremental pool term %v, from scratch %v", j, DefaultThetas[ti], at, got.NPool[ti][at], terms[j].NPool[ti][at])
			}
		}
	}
}

// TestCacheMemoryMaxKeys: with MaxKeys the memory holds at most that many
// neural keys over all its pools, evicting whole least recently used
// pools, never the one just admitted to; a pool evicted starts empty when
// used again. WorstKeys says the bound.
func TestCacheMemoryMaxKeys(t *testing.T) {
	const c, n = 4, 21 // 20 keys a prompt
	mc := MemoryConfig{Width: c, NeuralKeys: 40, MaxKeys: 70}
	m, err := NewCacheMemory(UniformCache(32), mc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	admit := func(trained int) MemorySnapshot {
		t.Helper()
		p, lp := memPrompt(rng, 0, n)
		s, err := m.AdmitHidden(trained, nil, p, lp, memHidden(rng, n-1, c))
		if err != nil {
			t.Fatal(err)
		}
		if st := m.Stats(); st.Keys > mc.MaxKeys {
			t.Fatalf("%d keys held, bound %d", st.Keys, mc.MaxKeys)
		}
		if _, ok := m.Pool(MemoryKey{Trained: trained, Run: -1}); !ok {
			t.Fatalf("pool %d, just admitted to, was evicted", trained)
		}
		return s
	}
	admit(0)
	admit(0) // pool 0: 40 keys
	admit(1) // 60
	admit(2) // 80 > 70: pool 0 (least recently used) goes
	if _, ok := m.Pool(MemoryKey{Trained: 0, Run: -1}); ok {
		t.Fatal("the least recently used pool was kept over the bound")
	}
	if st := m.Stats(); st.Keys != 40 || st.Evicted != 1 {
		t.Fatalf("stats %+v, want 40 keys and 1 eviction", st)
	}
	admit(1) // pool 1 now 40 keys, pool 2 20: 60
	if s := admit(0); s.Prompts != 0 || s.Keys.Len() != 0 {
		t.Fatalf("an evicted pool came back with %d prompts, %d keys", s.Prompts, s.Keys.Len())
	}
	if st := m.Stats(); st.Evicted != 2 { // 80 > 70: pool 2 (used before pool 1's last admission) went
		t.Fatalf("stats %+v, want 2 evictions", st)
	}
	if _, ok := m.Pool(MemoryKey{Trained: 2, Run: -1}); ok {
		t.Fatal("pool 2, the least recently used, was kept")
	}
	if w := mc.WorstKeys(10); w != 70 {
		t.Fatalf("WorstKeys with a bound: %d", w)
	}
	if w := (MemoryConfig{Width: c}).WorstKeys(10); w != (10+DefaultMemoryClusters+1)*DefaultMemoryKeys {
		t.Fatalf("WorstKeys without a bound: %d", w)
	}
	if _, err := NewCacheMemory(UniformCache(32), MemoryConfig{MaxKeys: 10}); err == nil {
		t.Fatal("a key bound without a width: accepted")
	}
}
