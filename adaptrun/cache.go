package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
)

// The token cache's evaluation (adapt.CacheWeights): on windows scored
// through the inference path (ScoreServed, which keeps every position's
// loss with and without the adapter's plan), each stream is clustered the
// way a batch is (k-means on the plan's prompt features, batches of at
// most Batch windows), each cluster chooses its cache weights on its
// members' prompts alone, and the positions after the prompt are scored
// under the mixture. The controls that could show the gain is something
// else: the per-sequence cache (no pooling), pooling over random batches,
// each cluster given another cluster's pool and weights, and pools without
// the windows that may be a window's neighbours in its document.

// CacheOpts configure EvalCache.
type CacheOpts struct {
	Prior     []float64 // the cache's prior over the vocabulary (adapt.UnigramPrior of pretraining text)
	Betas     []float64 // pseudo-counts tried on validation
	Batch     int       // windows a cluster batch
	Seed      uint64    // k-means and the random batches
	Bootstrap int       // resamples of each interval
	// Memory bounds the served cache memory's replay (adapt.CacheMemory):
	// its radius is the adapter's gate radius, its window and cluster
	// bound the server's defaults.
	Memory adapt.MemoryConfig
	// Thetas are the neural cache's key sharpnesses (nil: adapt.DefaultThetas).
	Thetas []float64
	// Progress, if set, hears after each row of each stream: rows done of
	// total, and the stream.
	Progress func(done, total int, stream string)
	// AdaptedOnly scores only the rows with the adapter (the rows without
	// it are the base model's, the same for every adapter): for comparing
	// adapters (CacheResult.Versus).
	AdaptedOnly bool
	// KeepScores writes each row's per-window losses into the result
	// (CacheRow.PerWindow), so that another run can be compared with it
	// window by window.
	KeepScores bool
}

// CacheRow is one row of a stream's table.
type CacheRow struct {
	Name      string             `json:"name"`
	Role      string             `json:"role"` // RoleBaseline, RoleMethod or RoleControl
	Diff      Interval           `json:"diff"` // nats/token against the base model, paired bootstrap
	PPL       float64            `json:"ppl"`
	PerDomain map[string]float64 `json:"per_domain"` // nats/token against the base model
	PerRole   map[string]float64 `json:"per_role"`
	// MeanWeights are the clusters' chosen weights averaged over windows.
	MeanWeights adapt.CacheWeights `json:"mean_weights"`
	// PerWindow are the row's losses per window (CacheOpts.KeepScores).
	PerWindow *Scores `json:"per_window,omitempty"`
	scores    Scores
}

// CacheStream is one stream's rows.
type CacheStream struct {
	Name    string     `json:"name"`
	Windows int        `json:"windows"`
	BasePPL float64    `json:"base_ppl"`
	Rows    []CacheRow `json:"rows"`
	// Pairs compare rows directly (a - b, nats/token, paired bootstrap):
	// what pooling by cluster adds to the per-sequence cache and to random
	// batches, and what the cache adds to the adapter.
	Pairs []CachePair `json:"pairs"`
}

// CachePair is one paired comparison of two rows of a stream.
type CachePair struct {
	A, B string
	Diff Interval
}

// cachePairs are the comparisons each stream reports, by variant index.
var cachePairs = [][2]int{{2, 1}, {2, 3}, {5, 0}, {7, 1}, {7, 2}, {11, 1}, {11, 2}, {11, 7}, {10, 8}, {10, 5}, {10, 9},
	{13, 12}, {13, 14}, {13, 2}, {13, 16}, {18, 17}, {18, 5}, {18, 0}, {13, 19}, {19, 12},
	{21, 10}, {21, 17}, {21, 18}, {20, 12}}

// CacheResult is EvalCache's report.
type CacheResult struct {
	Beta    float64            `json:"beta"`     // chosen on validation
	BetaVal map[string]float64 `json:"beta_val"` // validation nats/token against base, per beta tried
	Streams []CacheStream      `json:"streams"`
	Roles   map[string]string  `json:"roles"`
	// SeedMeans are, per row, the last stream's nats/token against base
	// under each k-means (and random-batch) seed, this result's first
	// (AddSeed appends the others).
	SeedMeans map[string][]float64 `json:"seed_means,omitempty"`
	Order     []string             `json:"order"`
	Config    map[string]any       `json:"config"`
	// Against compares the rows with another run's (Versus).
	Against *CacheVersus `json:"against,omitempty"`
}

// cacheVariant is one way to score a stream.
type cacheVariant struct {
	name, role string
	adapted    bool   // the adapter's losses under the cache, not the base model's
	groups     string // "single", "cluster", "random", "shuffled", "memory" (replayMemory, replayMemoryNeural)
	cache      bool   // false: no cache (the adapter alone)
	pool       bool
	// noNeighbours drops from a window's pool the prompts of windows that
	// may be its neighbours in their document (one's first token is the
	// other's last: windows are consecutive cuts of a domain's stream, so
	// a true neighbour always matches, and a few others do by chance).
	noNeighbours bool
	withSelf     bool // memory: adapt.MemoryConfig.WithSelf
	// neural adds the neural cache (ncache.go): keys from the hidden
	// states, own and (with pool) the cluster's prompts'.
	neural bool
	// noVerbatim drops from the neural pool every key whose span of
	// verbatimSpan tokens (ending with its value) occurs in the scored
	// window: what is left is help from similar contexts, not copies.
	noVerbatim bool
}

var cacheVariants = []cacheVariant{
	{name: "adapter (served plan, no cache)", role: RoleBaseline, adapted: true, groups: "single"},
	{name: "cache: the sequence's own tokens", role: RoleControl, groups: "single", cache: true},
	{name: "cache: own tokens + the cluster's prompts (ChamaleonLLM+ cache)", role: RoleMethod, groups: "cluster", cache: true, pool: true},
	{name: "control: own tokens + a random batch's prompts", role: RoleControl, groups: "random", cache: true, pool: true},
	{name: "control: own tokens + another cluster's prompts and weights", role: RoleControl, groups: "shuffled", cache: true, pool: true},
	{name: "adapter + cache (own + cluster's prompts)", role: RoleMethod, adapted: true, groups: "cluster", cache: true, pool: true},
	{name: "control: the cluster cache without possible document neighbours in the pool", role: RoleControl, groups: "cluster", cache: true,
		pool: true, noNeighbours: true},
	// The server's cache memory replayed in arrival order (cache_memory.go).
	{name: "served memory (own + its memory cluster's earlier prompts, arrival order), the pool's own weights", role: RoleControl, groups: "memory",
		cache: true, pool: true},
	{name: "adapter + own-only cache", role: RoleControl, adapted: true, groups: "single", cache: true},
	{name: "adapter + served memory, the pool's own weights", role: RoleControl, adapted: true, groups: "memory", cache: true, pool: true},
	{name: "adapter + served memory, weights chosen with the admitted prompt (chameleon serve --cache)", role: RoleMethod, adapted: true,
		groups: "memory", cache: true, pool: true, withSelf: true},
	{name: "served memory, weights chosen with the admitted prompt", role: RoleMethod, groups: "memory", cache: true, pool: true, withSelf: true},
	// The neural cache (ncache.go), beside the token cache's counts.
	{name: "neural cache: own positions and tokens only (per sequence)", role: RoleControl, groups: "single", cache: true, neural: true},
	{name: "neural cache: own + the cluster's prompts (ChamaleonLLM+ neural cache)", role: RoleMethod, groups: "cluster", cache: true,
		pool: true, neural: true},
	{name: "control: neural, own + a random batch's prompts", role: RoleControl, groups: "random", cache: true, pool: true, neural: true},
	{name: "control: neural, own + another cluster's prompts and weights", role: RoleControl, groups: "shuffled", cache: true, pool: true,
		neural: true},
	{name: "control: the neural cluster cache without possible document neighbours in the pool", role: RoleControl, groups: "cluster",
		cache: true, pool: true, noNeighbours: true, neural: true},
	{name: "adapter + neural cache, own only", role: RoleControl, adapted: true, groups: "single", cache: true, neural: true},
	{name: "adapter + neural cache (own + the cluster's prompts)", role: RoleMethod, adapted: true, groups: "cluster", cache: true,
		pool: true, neural: true},
	{name: "control: the neural cluster cache without pool keys that repeat an 8-token span of the window", role: RoleControl,
		groups: "cluster", cache: true, pool: true, neural: true, noVerbatim: true},
	// The server's memory with the neural cache (replayMemoryNeural).
	{name: "neural served memory (own + its memory cluster's earlier prompts, arrival order), weights chosen with the admitted prompt",
		role: RoleMethod, groups: "memory", cache: true, pool: true, withSelf: true, neural: true},
	{name: "adapter + neural served memory, weights chosen with the admitted prompt (chameleon serve --cache)", role: RoleMethod,
		adapted: true, groups: "memory", cache: true, pool: true, withSelf: true, neural: true},
}

// concatServed pools scored splits into one stream.
func concatServed(ss ...*Served) *Served {
	all := &Served{Split: "mixed"}
	for _, s := range ss {
		all.Domains = append(all.Domains, s.Domains...)
		all.Base, all.Adapted = concatScores(all.Base, s.Base), concatScores(all.Adapted, s.Adapted)
		all.Kept, all.Cluster = append(all.Kept, s.Kept...), append(all.Cluster, s.Cluster...)
		all.BaseTok, all.AdaptedTok = append(all.BaseTok, s.BaseTok...), append(all.AdaptedTok, s.AdaptedTok...)
		all.Tokens, all.Features = append(all.Tokens, s.Tokens...), append(all.Features, s.Features...)
		all.BaseHidden, all.AdaptedHidden = append(all.BaseHidden, s.BaseHidden...), append(all.AdaptedHidden, s.AdaptedHidden...)
		all.Prompt = s.Prompt
	}
	return all
}

// cacheGroups returns the windows of s grouped as kind says, and for
// "shuffled" the group whose pool and weights each group borrows.
func cacheGroups(s *Served, kind string, o CacheOpts) (groups [][]int, borrow []int, err error) {
	n := len(s.Tokens)
	switch kind {
	case "single":
		for i := range n {
			groups = append(groups, []int{i})
		}
		return groups, nil, nil
	case "random":
		p := rand.New(rand.NewPCG(o.Seed, 7)).Perm(n)
		return chunks(p, o.Batch), nil, nil
	}
	if len(s.Features) != n {
		return nil, nil, fmt.Errorf("adaptrun: cache: %d of %d windows have features: the adapter's plan must compute features (a hyper-network or a gated LoRA)", len(s.Features), n)
	}
	var f []float32
	for _, x := range s.Features {
		f = append(f, x...)
	}
	res, err := kmeans(f, len(s.Features[0]), cluster.DefaultK(n, o.Batch), o.Seed)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range cluster.FormBatches(res.Assign, res.Centroids.K, o.Batch) {
		groups = append(groups, b.Seqs)
	}
	if kind == "shuffled" {
		borrow = rand.New(rand.NewPCG(o.Seed, 0x5f)).Perm(len(groups))
		for i := range borrow {
			if borrow[i] == i && len(groups) > 1 { // never its own
				borrow[i] = (i + 1) % len(groups)
			}
		}
	}
	return groups, borrow, nil
}

// scoreCache scores stream s under variant v; it returns per-window
// scores and the weights each window was scored with.
func scoreCache(s *Served, v cacheVariant, cfg adapt.CacheConfig, o CacheOpts) (Scores, []adapt.CacheWeights, error) {
	lps := s.BaseTok
	if v.adapted {
		lps = s.AdaptedTok
	}
	n, p := len(s.Tokens), s.Prompt
	out := Scores{Loss: make([]float64, n), N: make([]int, n)}
	ws := make([]adapt.CacheWeights, n)
	if v.neural {
		return scoreNeural(s, v, cfg, o)
	}
	if v.groups == "memory" {
		mo := o
		mo.Memory.WithSelf = v.withSelf
		return replayMemory(s, lps, cfg, mo)
	}
	groups, borrow, err := cacheGroups(s, v.groups, o)
	if err != nil {
		return out, nil, err
	}
	weights := make([]adapt.CacheWeights, len(groups))
	pools := make([]*adapt.TokenCounts, len(groups))
	for gi, g := range groups {
		pools[gi] = &adapt.TokenCounts{}
		var prompts [][]int32
		var lp [][]float32
		for _, i := range g {
			pools[gi].Add(s.Tokens[i][:p]...)
			prompts, lp = append(prompts, s.Tokens[i][:p]), append(lp, lps[i][:p-1])
		}
		if v.cache {
			if weights[gi], err = adapt.ChooseCacheWeights(prompts, lp, v.pool, cfg); err != nil {
				return out, nil, err
			}
		}
	}
	for gi, g := range groups {
		src := gi
		if borrow != nil {
			src = borrow[gi]
		}
		pool := pools[src]
		if !v.pool {
			pool = nil
		}
		for _, i := range g {
			ws[i] = weights[src]
			own := pool
			if v.noNeighbours {
				own = withoutNeighbours(pool, s.Tokens, i, g, p)
			}
			out.Loss[i], out.N[i] = weights[src].SequenceLoss(s.Tokens[i], lps[i], p-1, len(lps[i]), own, cfg)
		}
	}
	return out, ws, nil
}

// withoutNeighbours is pool without the prompts of the members of g that
// may be window i's neighbours in its document (see noNeighbours).
func withoutNeighbours(pool *adapt.TokenCounts, toks [][]int32, i int, g []int, p int) *adapt.TokenCounts {
	a := toks[i]
	var drop []int
	for _, j := range g {
		b := toks[j]
		if j != i && mayNeighbour(a, b) {
			drop = append(drop, j)
		}
	}
	if len(drop) == 0 {
		return pool
	}
	c := pool.Clone()
	for _, j := range drop {
		c.Remove(toks[j][:p]...)
	}
	return c
}

// EvalCache chooses the prior's weight beta on validation (the method's
// row) and scores test, harm (nil: none) and the two in one stream.
func EvalCache(val, test, harm *Served, roles map[string]string, order []string, o CacheOpts) (*CacheResult, error) {
	if o.Batch < 1 || len(o.Betas) == 0 {
		return nil, fmt.Errorf("adaptrun: cache: batch %d and %d betas", o.Batch, len(o.Betas))
	}
	res := &CacheResult{BetaVal: map[string]float64{}, Roles: roles, Order: order,
		Config: map[string]any{"batch": o.Batch, "seed": o.Seed, "grid": adapt.DefaultCacheGrid, "max_total": 0.8, "betas": o.Betas}}
	cfg := adapt.CacheConfig{Prior: o.Prior, Grid: adapt.DefaultCacheGrid, MaxTotal: 0.8}
	best := math.Inf(1)
	for _, b := range o.Betas {
		cfg.Beta = b
		if err := cfg.Check(); err != nil {
			return nil, err
		}
		sc, _, err := scoreCache(val, cacheVariants[2], cfg, o)
		if err != nil {
			return nil, err
		}
		d := sc.Mean(nil) - val.Base.Mean(nil)
		res.BetaVal[fmt.Sprint(b)] = d
		if d < best {
			best, res.Beta = d, b
		}
	}
	cfg.Beta = res.Beta
	streams := []*Served{test}
	if harm != nil {
		streams = append(streams, harm, concatServed(test, harm))
	}
	done, total := 0, len(streams)*len(cacheVariants)
	tick := func(stream string) {
		if done++; o.Progress != nil {
			o.Progress(done, total, stream)
		}
	}
	for _, s := range streams {
		st := CacheStream{Name: s.Split, Windows: len(s.Tokens), BasePPL: math.Exp(s.Base.Mean(nil))}
		at := map[int]int{} // variant index -> row index
		for vi, v := range cacheVariants {
			if v.neural && len(s.BaseHidden) != len(s.Tokens) || o.AdaptedOnly && !v.adapted {
				tick(s.Split)
				continue // scored without hidden states (ScoreServed): no neural rows
			}
			at[vi] = len(st.Rows)
			var sc Scores
			var ws []adapt.CacheWeights
			var err error
			if v.cache {
				sc, ws, err = scoreCache(s, v, cfg, o)
				if err != nil {
					return nil, err
				}
			} else {
				sc = s.Adapted
			}
			st.Rows = append(st.Rows, cacheRow(v, s, sc, ws, roles, o.Bootstrap))
			if o.KeepScores {
				st.Rows[len(st.Rows)-1].PerWindow = &sc
			}
			tick(s.Split)
		}

		for _, pr := range cachePairs {
			ia, oka := at[pr[0]]
			ib, okb := at[pr[1]]
			if !oka || !okb {
				continue
			}
			a, b := st.Rows[ia], st.Rows[ib]
			st.Pairs = append(st.Pairs, CachePair{A: a.Name, B: b.Name, Diff: PairedBootstrap(a.scores, b.scores, o.Bootstrap, 2)})
		}
		res.Streams = append(res.Streams, st)
	}
	return res, nil
}

// AddSeed records other's last-stream figures (the same windows under
// another seed) beside this result's.
func (r *CacheResult) AddSeed(other *CacheResult) {
	if r.SeedMeans == nil {
		r.SeedMeans = map[string][]float64{}
		for _, x := range r.Streams[len(r.Streams)-1].Rows {
			r.SeedMeans[x.Name] = []float64{x.Diff.Mean}
		}
	}
	for _, x := range other.Streams[len(other.Streams)-1].Rows {
		r.SeedMeans[x.Name] = append(r.SeedMeans[x.Name], x.Diff.Mean)
	}
}

// cacheRow summarises one variant's scores against the base model.
func cacheRow(v cacheVariant, s *Served, sc Scores, ws []adapt.CacheWeights, roles map[string]string, iters int) CacheRow {
	r := CacheRow{Name: v.name, Role: v.role, Diff: PairedBootstrap(sc, s.Base, iters, 1), PPL: math.Exp(sc.Mean(nil)),
		PerDomain: map[string]float64{}, PerRole: map[string]float64{}, scores: sc}
	diff := func(keep func(i int) bool) float64 { return sc.Mean(keep) - s.Base.Mean(keep) }
	for _, d := range s.Domains {
		if _, ok := r.PerDomain[d]; !ok {
			r.PerDomain[d] = diff(func(i int) bool { return s.Domains[i] == d })
		}
	}
	for _, role := range []string{RoleAdapt, RolePretrain, RoleHeldOut} {
		keep := func(i int) bool { return roles[s.Domains[i]] == role }
		for i := range s.Domains {
			if keep(i) {
				r.PerRole[role] = diff(keep)
				break
			}
		}
	}
	nth := 0 // windows with a neural weight: Theta is their mean
	for _, w := range ws {
		r.MeanWeights.Own += w.Own / float64(len(ws))
		r.MeanWeights.Pool += w.Pool / float64(len(ws))
		r.MeanWeights.NeuralOwn += w.NeuralOwn / float64(len(ws))
		r.MeanWeights.NeuralPool += w.NeuralPool / float64(len(ws))
		if w.Theta > 0 {
			r.MeanWeights.Theta += w.Theta
			nth++
		}
	}
	if nth > 0 {
		r.MeanWeights.Theta /= float64(nth)
	}
	return r
}
