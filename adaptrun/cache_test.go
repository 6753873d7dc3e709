package adaptrun

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
)

// synthServed builds windows of two domains: "lang", written in tokens
// 0..7 that the model finds uniform (it has never seen the language),
// and "known", random tokens the model predicts well. Features separate
// the domains.
func synthServed(split string, perDomain int, seed uint64) *Served {
	const v, t, p = 64, 48, 16
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &Served{Split: split, Prompt: p}
	for _, d := range []string{"lang", "known"} {
		for range perDomain {
			toks := make([]int32, t+1)
			lp := make([]float32, t)
			for j := range toks {
				if d == "lang" {
					toks[j] = int32(rng.IntN(8))
				} else {
					toks[j] = int32(8 + rng.IntN(v-8))
				}
			}
			for j := range lp {
				if d == "lang" {
					lp[j] = float32(math.Log(v))
				} else {
					lp[j] = 0.05
				}
			}
			f := []float32{1, 0.1 * float32(rng.Float64())}
			if d == "known" {
				f = []float32{0.1 * float32(rng.Float64()), 1}
			}
			s.Domains = append(s.Domains, d)
			s.Tokens = append(s.Tokens, toks)
			s.BaseTok, s.AdaptedTok = append(s.BaseTok, lp), append(s.AdaptedTok, lp)
			s.Features = append(s.Features, f)
			s.Kept = append(s.Kept, false)
			s.Base = appendScored(s.Base, lp, p)
			s.Adapted = appendScored(s.Adapted, lp, p)
		}
	}
	return s
}

func TestEvalCache(t *testing.T) {
	uni := make([]float64, 64)
	for i := range uni {
		uni[i] = 1.0 / 64
	}
	roles := map[string]string{"lang": RoleHeldOut, "known": RolePretrain}
	o := CacheOpts{Prior: uni, Betas: []float64{1, 4}, Batch: 8, Seed: 1, Bootstrap: 200}
	res, err := EvalCache(synthServed("validation", 8, 1), synthServed("test", 16, 2), synthServed("harm", 16, 3), roles, []string{"lang", "known"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Streams) != 3 || res.Streams[2].Name != "mixed" || res.Streams[2].Windows != 64 {
		t.Fatalf("streams %+v", res.Streams)
	}
	rows := res.Streams[0].Rows
	byName := map[string]CacheRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	adapter, own := byName[cacheVariants[0].name], byName[cacheVariants[1].name]
	clu, rnd, shuf := byName[cacheVariants[2].name], byName[cacheVariants[3].name], byName[cacheVariants[4].name]
	if adapter.Diff.Mean != 0 {
		t.Fatalf("the adapter row (adapted = base here) moved by %v", adapter.Diff.Mean)
	}
	// The unseen language gains from the cache; pooling its cluster's
	// prompts gains more than its own tokens alone; the model's good
	// domain keeps (nearly) its loss.
	if !(clu.PerDomain["lang"] < own.PerDomain["lang"] && own.PerDomain["lang"] < -0.5) {
		t.Fatalf("lang: cluster %v, own %v", clu.PerDomain["lang"], own.PerDomain["lang"])
	}
	if math.Abs(clu.PerDomain["known"]) > 0.02 {
		t.Fatalf("known: cluster cache moved the loss by %v", clu.PerDomain["known"])
	}
	if clu.MeanWeights.Pool <= 0 {
		t.Fatalf("no pool weight chosen: %+v", clu.MeanWeights)
	}
	// The controls lose to the clusters: a random batch mixes the
	// languages, another cluster's pool and weights are the wrong ones.
	if !(rnd.Diff.Mean > clu.Diff.Mean && shuf.Diff.Mean > clu.Diff.Mean) {
		t.Fatalf("cluster %v, random %v, shuffled %v", clu.Diff.Mean, rnd.Diff.Mean, shuf.Diff.Mean)
	}
	// The paired comparisons are the rows' own differences.
	st := res.Streams[0]
	if len(st.Pairs) != len(cachePairs)-neuralPairs() || math.Abs(st.Pairs[0].Diff.Mean-(clu.Diff.Mean-own.Diff.Mean)) > 1e-9 {
		t.Fatalf("pairs %+v: want cluster minus own = %v", st.Pairs, clu.Diff.Mean-own.Diff.Mean)
	}
	// Another seed's figures sit beside the first's.
	o2 := o
	o2.Seed = 2
	res2, err := EvalCache(synthServed("validation", 8, 1), synthServed("test", 16, 2), synthServed("harm", 16, 3), roles, []string{"lang", "known"}, o2)
	if err != nil {
		t.Fatal(err)
	}
	res.AddSeed(res2)
	if sm := res.SeedMeans[clu.Name]; len(sm) != 2 || sm[0] != res.Streams[2].Rows[2].Diff.Mean || sm[1] != res2.Streams[2].Rows[2].Diff.Mean {
		t.Fatalf("seed means %v", sm)
	}
	dir := t.TempDir()
	if err := res.WritePNG(filepath.Join(dir, "c.png")); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteJSON(filepath.Join(dir, "c.json.gz")); err != nil {
		t.Fatal(err)
	}
	// Served without features cannot be clustered: a clear error.
	noF := synthServed("test", 4, 5)
	noF.Features = nil
	if _, err := EvalCache(synthServed("validation", 4, 1), noF, nil, roles, nil, o); err == nil {
		t.Fatal("no features: no error")
	}
	_ = adapt.DefaultCacheGrid
}

// TestReplayMemory: the served memory's replay scores each window with
// the pool of the windows of its run-time cluster (here its domain: the
// features lie far apart) that arrived before it, and the weights chosen
// on exactly those prompts.
func TestReplayMemory(t *testing.T) {
	s := synthServed("test", 12, 4)
	cfg := adapt.UniformCache(64)
	o := CacheOpts{Seed: 3, Memory: adapt.MemoryConfig{Radius: 0.5, Window: 5}}
	sc, ws, err := replayMemory(s, s.BaseTok, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Prompt
	var seen []int
	pooled := 0
	for _, i := range rand.New(rand.NewPCG(o.Seed, 0x3e3)).Perm(len(s.Tokens)) {
		var prompts [][]int32
		var lp [][]float32
		for _, j := range seen {
			if s.Domains[j] == s.Domains[i] {
				prompts, lp = append(prompts, s.Tokens[j][:p]), append(lp, s.BaseTok[j][:p-1])
			}
		}
		prompts, lp = prompts[max(0, len(prompts)-5):], lp[max(0, len(lp)-5):]
		var pool adapt.TokenCounts
		w := adapt.CacheWeights{}
		for _, q := range prompts {
			pool.Add(q...)
		}
		if len(prompts) > 0 {
			w, _ = adapt.ChooseCacheWeights(prompts, lp, true, cfg)
		}
		want, _ := w.SequenceLoss(s.Tokens[i], s.BaseTok[i], p-1, len(s.BaseTok[i]), &pool, cfg)
		if ws[i] != w || math.Abs(sc.Loss[i]-want) > 1e-9 {
			t.Fatalf("window %d: weights %+v loss %v, want %+v %v", i, ws[i], sc.Loss[i], w, want)
		}
		if w.Pool > 0 {
			pooled++
		}
		seen = append(seen, i)
	}
	if pooled == 0 {
		t.Fatal("no window used its pool")
	}
	// Trained clusters key the memory where the plan kept the window.
	s.Cluster = make([]int, len(s.Tokens))
	if _, _, err := replayMemory(s, s.BaseTok, cfg, o); err != nil {
		t.Fatal(err)
	}
	s.Cluster = s.Cluster[:3]
	if _, _, err := replayMemory(s, s.BaseTok, cfg, o); err == nil {
		t.Fatal("clusters of another length: no error")
	}
}

// neuralPairs counts the pairs that need a neural row (absent without
// hidden states).
func neuralPairs() int {
	n := 0
	for _, pr := range cachePairs {
		if cacheVariants[pr[0]].neural || cacheVariants[pr[1]].neural {
			n++
		}
	}
	return n
}

// withHidden gives synthServed's windows hidden states: each position's
// is its token's direction (plus a little noise), and the "lang" windows
// follow one fixed successor per token (a language with fixed bigrams),
// so a key with the query's token carries the next token: what the
// neural cache reads and the token cache cannot.
func withHidden(s *Served, seed uint64) *Served {
	const c = 64
	rng := rand.New(rand.NewPCG(seed, 9))
	succ := rand.New(rand.NewPCG(77, 1)).Perm(8)
	for i, toks := range s.Tokens {
		if s.Domains[i] == "lang" {
			toks[0] = int32(rng.IntN(8))
			for j := 1; j < len(toks); j++ {
				toks[j] = int32(succ[toks[j-1]])
			}
		}
		h := make([]float32, (len(toks)-1)*c)
		for j := range len(toks) - 1 {
			h[j*c+int(toks[j])] = 1
			for k := range c {
				h[j*c+k] += 0.05 * float32(rng.NormFloat64())
			}
		}
		u := adapt.UnitRows(h, c)
		s.BaseHidden, s.AdaptedHidden = append(s.BaseHidden, u), append(s.AdaptedHidden, u)
	}
	return s
}

// TestEvalNeuralCache: with hidden states, the neural rows appear; on the
// language of fixed bigrams the neural cache beats the token cache, its
// cluster's prompts beat its own positions alone, the controls lose to
// the clusters, and the domain the model knows keeps its loss.
func TestEvalNeuralCache(t *testing.T) {
	uni := make([]float64, 64)
	for i := range uni {
		uni[i] = 1.0 / 64
	}
	roles := map[string]string{"lang": RoleHeldOut, "known": RolePretrain}
	o := CacheOpts{Prior: uni, Betas: []float64{4}, Batch: 8, Seed: 1, Bootstrap: 100, Thetas: []float64{5, 20}}
	var heard [][2]int
	o.Progress = func(done, total int, stream string) { heard = append(heard, [2]int{done, total}) }
	res, err := EvalCache(withHidden(synthServed("validation", 8, 1), 1), withHidden(synthServed("test", 16, 2), 2), nil, roles,
		[]string{"lang", "known"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cacheVariants); len(heard) != n || heard[0] != [2]int{1, n} || heard[n-1] != [2]int{n, n} {
		t.Fatalf("progress heard %v, want 1 .. %d of %d", heard, n, n)
	}
	st := res.Streams[0]
	if len(st.Rows) != len(cacheVariants) || len(st.Pairs) != len(cachePairs) {
		t.Fatalf("%d rows and %d pairs, want %d and %d", len(st.Rows), len(st.Pairs), len(cacheVariants), len(cachePairs))
	}
	row := func(i int) CacheRow { return st.Rows[i] }
	tokClu, nOwn, nClu, nRnd, nShuf := row(2), row(12), row(13), row(14), row(15)
	if !(nClu.PerDomain["lang"] < nOwn.PerDomain["lang"] && nOwn.PerDomain["lang"] < tokClu.PerDomain["lang"]) {
		t.Fatalf("lang: neural cluster %v, neural own %v, token cluster cache %v", nClu.PerDomain["lang"], nOwn.PerDomain["lang"],
			tokClu.PerDomain["lang"])
	}
	if math.Abs(nClu.PerDomain["known"]) > 0.02 {
		t.Fatalf("known: the neural cluster cache moved the loss by %v", nClu.PerDomain["known"])
	}
	if nClu.MeanWeights.NeuralPool <= 0 || nClu.MeanWeights.Theta <= 0 {
		t.Fatalf("no neural pool weight chosen: %+v", nClu.MeanWeights)
	}
	if !(nRnd.Diff.Mean > nClu.Diff.Mean && nShuf.Diff.Mean > nClu.Diff.Mean) {
		t.Fatalf("neural cluster %v, random %v, shuffled %v", nClu.Diff.Mean, nRnd.Diff.Mean, nShuf.Diff.Mean)
	}
	// The language repeats one cycle: every pool key repeats a span of
	// the window, so without them the cluster's pool is gone.
	if nv := row(19); !(nv.PerDomain["lang"] > nClu.PerDomain["lang"]) {
		t.Fatalf("lang: without verbatim spans %v, neural cluster %v", nv.PerDomain["lang"], nClu.PerDomain["lang"])
	}
	if d := st.Pairs[11].Diff.Mean - (nClu.Diff.Mean - nOwn.Diff.Mean); math.Abs(d) > 1e-9 {
		t.Fatalf("pair %+v is not the rows' difference", st.Pairs[11])
	}
}

// TestReplayMemoryNeural: the served memory's replay with the neural cache
// scores each window with the counts and keys of the windows of its
// run-time cluster (its domain) that arrived before it, at most the
// window's 5, and the weights chosen, with the window's own prompt in, by
// leave-one-out on exactly those prompts and its own, all rebuilt here
// from scratch (adapt.PoolTerms, ChooseMixWeights).
func TestReplayMemoryNeural(t *testing.T) {
	s := withHidden(synthServed("test", 12, 4), 4)
	cfg := adapt.UniformCache(64)
	o := CacheOpts{Seed: 3, Memory: adapt.MemoryConfig{Radius: 0.5, Window: 5, WithSelf: true}}
	sc, ws, err := replayMemoryNeural(s, s.BaseTok, s.BaseHidden, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	p, c, th := s.Prompt, len(s.BaseHidden[0])/len(s.BaseTok[0]), adapt.DefaultThetas
	lend := func(js []int) []adapt.PoolPrompt {
		var out []adapt.PoolPrompt
		for _, j := range js {
			out = append(out, adapt.PoolPrompt{Tokens: s.Tokens[j][:p], Hidden: s.BaseHidden[j][:(p-1)*c]})
		}
		return out
	}
	var seen []int
	neural := 0
	for _, i := range rand.New(rand.NewPCG(o.Seed, 0x3e3)).Perm(len(s.Tokens)) {
		var pool []int
		for _, j := range seen {
			if s.Domains[j] == s.Domains[i] {
				pool = append(pool, j)
			}
		}
		pool = pool[max(0, len(pool)-5):]
		members := append(slices.Clone(pool), i)
		var terms []*adapt.MixTerms
		for _, m := range members {
			rest := slices.DeleteFunc(slices.Clone(members), func(j int) bool { return j == m })
			tm, err := adapt.PoolTerms(s.Tokens[m][:p], s.BaseTok[m], s.BaseHidden[m], p-1, c, lend(rest), nil, cfg, th)
			if err != nil {
				t.Fatal(err)
			}
			terms = append(terms, tm)
		}
		multi := len(members) > 1
		w := adapt.ChooseMixWeights(terms, adapt.MixChoice{Own: true, Pool: multi, NeuralOwn: true, NeuralPool: multi}, cfg, th)
		l := len(s.BaseTok[i])
		tm, err := adapt.PoolTerms(s.Tokens[i], s.BaseTok[i], s.BaseHidden[i], l, c, lend(pool), nil, cfg, th)
		if err != nil {
			t.Fatal(err)
		}
		want := w.MixLoss(tm, p-1, l)
		if ws[i] != w || math.Abs(sc.Loss[i]-want) > 1e-6*math.Max(1, math.Abs(want)) || sc.N[i] != l-(p-1) {
			t.Fatalf("window %d: weights %+v loss %v (%d tokens), want %+v %v", i, ws[i], sc.Loss[i], sc.N[i], w, want)
		}
		if w.NeuralPool > 0 {
			neural++
		}
		seen = append(seen, i)
	}
	if neural == 0 {
		t.Fatal("no window gave its neural pool a weight")
	}
	if _, _, err := replayMemoryNeural(s, s.BaseTok, s.BaseHidden[:3], cfg, o); err == nil {
		t.Fatal("hidden states for 3 of the windows: no error")
	}
}
