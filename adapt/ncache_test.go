package adapt

import (
	"math"
	"math/rand/v2"
	"testing"
)

// randomSeqs are n sequences of l tokens over v and model losses for
// their positions.
func randomSeqs(rng *rand.Rand, n, l, v int) ([][]int32, [][]float32) {
	toks, lp := make([][]int32, n), make([][]float32, n)
	for i := range n {
		for range l {
			toks[i] = append(toks[i], int32(rng.IntN(v)))
		}
		for range l - 1 {
			lp[i] = append(lp[i], float32(0.5+3*rng.Float64()))
		}
	}
	return toks, lp
}

// TestMixMatchesTokenCache: restricted to the token cache's two weights,
// the mixture's choice and loss are the token cache's.
func TestMixMatchesTokenCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := UniformCache(12)
	for trial := range 20 {
		toks, lp := randomSeqs(rng, 2+trial%5, 6+trial%7, 12)
		want, err := ChooseCacheWeights(toks, lp, true, cfg)
		if err != nil {
			t.Fatal(err)
		}
		members := make([]*MixTerms, len(toks))
		for i := range toks {
			var pool TokenCounts
			for j := range toks {
				if j != i {
					pool.Add(toks[j]...)
				}
			}
			members[i] = &MixTerms{}
			if err := TokenTerms(members[i], toks[i], lp[i], &pool, cfg); err != nil {
				t.Fatal(err)
			}
		}
		got := ChooseMixWeights(members, MixChoice{Own: true, Pool: true}, cfg, DefaultThetas)
		if got.Own != want.Own || got.Pool != want.Pool || got.NeuralOwn != 0 || got.NeuralPool != 0 {
			t.Fatalf("trial %d: mixture chose %+v, the token cache %+v", trial, got, want)
		}
		var pool TokenCounts
		pool.Add(toks[1]...)
		sl, _ := want.SequenceLoss(toks[0], lp[0], 2, len(lp[0]), &pool, cfg)
		tm := &MixTerms{}
		if err := TokenTerms(tm, toks[0], lp[0], &pool, cfg); err != nil {
			t.Fatal(err)
		}
		if ml := want.MixLoss(tm, 2, len(lp[0])); math.Abs(ml-sl) > 1e-9*math.Abs(sl) {
			t.Fatalf("trial %d: MixLoss %v, SequenceLoss %v", trial, ml, sl)
		}
	}
}

// TestNeuralTerms checks NeuralTerms against the definition, position by
// position, on random keys.
func TestNeuralTerms(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const c, l, np, v = 5, 9, 7, 4
	raw := func(n int) []float32 {
		x := make([]float32, n*c)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	q := UnitRows(raw(l), c)
	next := make([]int32, l)
	for j := range next {
		next[j] = int32(rng.IntN(v))
	}
	pool := &NeuralKeys{C: c}
	pv := make([]int32, np)
	for j := range pv {
		pv[j] = int32(rng.IntN(v))
	}
	if err := pool.Add(UnitRows(raw(np), c), pv); err != nil {
		t.Fatal(err)
	}
	tm := &MixTerms{P: make([]float64, l)}
	for j := range tm.P {
		tm.P[j] = 0.1 + 0.01*float64(j)
	}
	thetas := []float64{3, 11}
	if err := NeuralTerms(tm, q, next, pool, c, thetas); err != nil {
		t.Fatal(err)
	}
	dot := func(a, b []float32) float64 {
		s := 0.0
		for k := range a {
			s += float64(a[k]) * float64(b[k])
		}
		return s
	}
	want := func(j int, keys []float32, vals []int32, th float64) float64 {
		if len(vals) == 0 {
			return tm.P[j]
		}
		var num, den float64
		for k := range vals {
			e := math.Exp(th * dot(q[j*c:(j+1)*c], keys[k*c:(k+1)*c]))
			den += e
			if vals[k] == next[j] {
				num += e
			}
		}
		return num / den
	}
	for ti, th := range thetas {
		for j := range l {
			if w := want(j, q[:j*c], next[:j], th); math.Abs(tm.NOwn[ti][j]-w) > 1e-5 {
				t.Fatalf("theta %g position %d: own %v, want %v", th, j, tm.NOwn[ti][j], w)
			}
			if w := want(j, pool.K, pool.V, th); math.Abs(tm.NPool[ti][j]-w) > 1e-5 {
				t.Fatalf("theta %g position %d: pool %v, want %v", th, j, tm.NPool[ti][j], w)
			}
		}
	}
	if err := NeuralTerms(tm, q[:c], next, pool, c, thetas); err == nil {
		t.Fatal("NeuralTerms took 1 query row for 9 positions")
	}
	if err := pool.Add(q[:c], next[:2]); err == nil {
		t.Fatal("NeuralKeys.Add took 1 key row for 2 tokens")
	}
}

// TestNeuralCacheChoice: a cluster whose members repeat one text (the
// same contexts, the same next tokens) chooses the neural pool; members
// with unrelated keys and tokens do not.
func TestNeuralCacheChoice(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const c, l, v = 8, 12, 50
	base := make([]float32, l*c)
	for i := range base {
		base[i] = float32(rng.NormFloat64())
	}
	text := make([]int32, l+1)
	for j := range text {
		text[j] = int32(rng.IntN(v))
	}
	cfg := UniformCache(v)
	choose := func(repeat bool) CacheWeights {
		var hid [][]float32
		var toks [][]int32
		for range 4 {
			h, tk := base, text
			if !repeat {
				h = make([]float32, l*c)
				for i := range h {
					h[i] = float32(rng.NormFloat64())
				}
				tk = make([]int32, l+1)
				for j := range tk {
					tk[j] = int32(rng.IntN(v))
				}
			}
			hid, toks = append(hid, UnitRows(h, c)), append(toks, tk)
		}
		members := make([]*MixTerms, len(toks))
		for i := range toks {
			keys := &NeuralKeys{C: c}
			for j := range toks {
				if j != i {
					if err := keys.Add(hid[j], toks[j][1:]); err != nil {
						t.Fatal(err)
					}
				}
			}
			lp := make([]float32, l)
			for j := range lp {
				lp[j] = float32(math.Log(v)) // the model knows nothing
			}
			members[i] = &MixTerms{}
			if err := TokenTerms(members[i], toks[i], lp, nil, cfg); err != nil {
				t.Fatal(err)
			}
			if err := NeuralTerms(members[i], hid[i], toks[i][1:], keys, c, DefaultThetas); err != nil {
				t.Fatal(err)
			}
		}
		return ChooseMixWeights(members, MixChoice{Own: true, Pool: true, NeuralOwn: true, NeuralPool: true}, cfg, DefaultThetas)
	}
	if w := choose(true); w.NeuralPool < 0.5 || w.Theta == 0 {
		t.Fatalf("repeated text: weights %+v, want the neural pool to take at least 0.5", w)
	}
	if w := choose(false); w.NeuralPool > 0.05 {
		t.Fatalf("unrelated members: weights %+v, want the neural pool at most 0.05", w)
	}
}

func TestUnitRows(t *testing.T) {
	u := UnitRows([]float32{3, 4, 0, 0}, 2)
	if u[0] != 0.6 || u[1] != 0.8 || u[2] != 0 || u[3] != 0 {
		t.Fatalf("UnitRows: %v", u)
	}
}

// ChooseMixWeights' parallel sums choose what one goroutine summing every
// candidate in order chooses, bit for bit, ties included.
func TestChooseMixWeightsParallel(t *testing.T) {
	cfg := UniformCache(16)
	rng := rand.New(rand.NewPCG(9, 9))
	for trial := range 6 {
		var members []*MixTerms
		for range 2 + trial {
			l := 5 + rng.IntN(20)
			m := &MixTerms{}
			row := func() []float64 {
				x := make([]float64, l)
				for j := range x {
					x[j] = rng.Float64()
					if trial%2 == 1 && j%3 == 0 {
						x[j] = 0.25 // repeated values: exact ties between candidates
					}
				}
				return x
			}
			m.P, m.UOwn, m.UPool = row(), row(), row()
			for range DefaultThetas {
				m.NOwn, m.NPool = append(m.NOwn, row()), append(m.NPool, row())
			}
			members = append(members, m)
		}
		for _, allow := range []MixChoice{{true, true, true, true}, {Own: true, NeuralOwn: true}, {Own: true, Pool: true}} {
			want, bestLoss := CacheWeights{}, math.Inf(1)
			for _, w := range mixCandidates(allow, cfg, DefaultThetas) {
				sum := 0.0
				for _, m := range members {
					sum += w.MixLoss(m, 0, len(m.P))
				}
				if sum < bestLoss {
					want, bestLoss = w, sum
				}
			}
			if got := ChooseMixWeights(members, allow, cfg, DefaultThetas); got != want {
				t.Fatalf("trial %d, %+v: parallel %+v, serial %+v", trial, allow, got, want)
			}
		}
	}
}
