package adapt

import (
	"math"
	"math/rand/v2"
	"testing"
)

func testCacheConfig(v int) CacheConfig {
	u := make([]float64, v)
	for i := range u {
		u[i] = 1 / float64(v)
	}
	return CacheConfig{Prior: u, Beta: 1, Grid: DefaultCacheGrid, MaxTotal: 0.8}
}

// TestCacheSequenceLoss checks the mixture against dense counts kept
// separately, position by position.
func TestCacheSequenceLoss(t *testing.T) {
	const v = 7
	cfg := testCacheConfig(v)
	rng := rand.New(rand.NewPCG(1, 2))
	toks := make([]int32, 30)
	lp := make([]float32, len(toks)-1)
	for i := range toks {
		toks[i] = int32(rng.IntN(v))
	}
	for i := range lp {
		lp[i] = float32(rng.Float64() * 4)
	}
	var pool TokenCounts
	pool.Add(1, 1, 3, 5)
	poolDense := []float64{0, 2, 0, 1, 0, 1, 0}
	w := CacheWeights{Own: 0.2, Pool: 0.1}
	from, to := 10, len(toks)-1
	got, n := w.SequenceLoss(toks, lp, from, to, &pool, cfg)
	if n != to-from {
		t.Fatalf("scored %d positions, want %d", n, to-from)
	}
	own := make([]float64, v)
	for _, x := range toks[:from] {
		own[x]++
	}
	want := 0.0
	for j := from; j < to; j++ {
		own[toks[j]]++
		y := toks[j+1]
		qo := (own[y] + 1.0/v) / (float64(j+1) + 1)
		qp := (poolDense[y] + 1.0/v) / (4 + 1)
		want -= math.Log(0.7*math.Exp(-float64(lp[j])) + 0.2*qo + 0.1*qp)
	}
	if math.Abs(got-want) > 1e-9 {
		t.Fatalf("loss %v, want %v", got, want)
	}
	// no weights: the model's own losses
	plain, _ := CacheWeights{}.SequenceLoss(toks, lp, from, to, &pool, cfg)
	sum := 0.0
	for _, l := range lp[from:to] {
		sum += float64(l)
	}
	if math.Abs(plain-sum) > 1e-4 {
		t.Fatalf("zero weights: %v, want the model's %v", plain, sum)
	}
	// an empty pool leaves its weight with the model
	a, _ := CacheWeights{Own: 0.2, Pool: 0.3}.SequenceLoss(toks, lp, from, to, &TokenCounts{}, cfg)
	b, _ := CacheWeights{Own: 0.2}.SequenceLoss(toks, lp, from, to, nil, cfg)
	if a != b {
		t.Fatalf("empty pool: %v, want %v", a, b)
	}
}

// TestChooseCacheWeights: a cluster whose prompts repeat each other's
// tokens where the model is poor takes the pool; where the model is
// already near certain, the cache stays off; a lone prompt takes no pool.
func TestChooseCacheWeights(t *testing.T) {
	const v = 50
	cfg := testCacheConfig(v)
	var prompts [][]int32
	var poor, sure [][]float32
	rng := rand.New(rand.NewPCG(3, 4))
	for range 4 {
		p := make([]int32, 40)
		for j := range p {
			p[j] = int32(rng.IntN(5)) // five tokens of fifty
		}
		prompts = append(prompts, p)
		l1, l2 := make([]float32, 39), make([]float32, 39)
		for j := range l1 {
			l1[j] = float32(math.Log(v)) // uniform model
			l2[j] = 0.001
		}
		poor, sure = append(poor, l1), append(sure, l2)
	}
	w, err := ChooseCacheWeights(prompts, poor, true, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.Pool <= 0 || w.Own+w.Pool < 0.5 {
		t.Fatalf("poor model: weights %+v, want a large cache weight with the pool in it", w)
	}
	w, err = ChooseCacheWeights(prompts, sure, true, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w != (CacheWeights{}) {
		t.Fatalf("near-certain model: weights %+v, want none", w)
	}
	w, err = ChooseCacheWeights(prompts[:1], poor[:1], true, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.Pool != 0 || w.Own == 0 {
		t.Fatalf("lone prompt: weights %+v, want own only", w)
	}
	w, err = ChooseCacheWeights(prompts, poor, false, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.Pool != 0 {
		t.Fatalf("usePool false: weights %+v", w)
	}
	if _, err := ChooseCacheWeights(prompts, poor[:2], true, cfg); err == nil {
		t.Fatal("mismatched rows: no error")
	}
	if err := (CacheConfig{Prior: cfg.Prior, Beta: 0, MaxTotal: 0.5}).Check(); err == nil {
		t.Fatal("beta 0: no error")
	}
	if _, err := UnigramPrior([]int32{1, 60}, v); err == nil {
		t.Fatal("token outside the vocabulary: no error")
	}
	u, err := UnigramPrior([]int32{1, 1, 2}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if s := u[0] + u[1] + u[2] + u[3]; math.Abs(s-1) > 1e-12 || math.Abs(u[1]-3.0/7) > 1e-12 {
		t.Fatalf("unigram prior %v", u)
	}
}
