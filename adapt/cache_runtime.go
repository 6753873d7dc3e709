package adapt

import (
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// The token cache in the inference path (cache.go has the method): a plan
// pools its prompts by k-means on its features, in groups of at most a
// batch (the clusters `adapt cache` evaluates), each pool chooses its
// weights on its prompts' per-position losses under the plan's own
// adapter, and CacheAdapter's passes mix after the head: the logits become
// log-probabilities, cache_mix mixes in each row's own counts (the tokens
// its sequence has run through the model so far, which the forward shows
// the adapter: model.TokenObserver) and its pool's counts.

// CacheBeta is the prior's weight, in pseudo-counts, of the runtime's
// cache: the value `adapt cache` chose on validation (docs/adapt-bench/cache).
const CacheBeta = 4

// UniformCache is the runtime's cache config over a vocabulary of v
// tokens: a uniform prior (on the benchmark's windows it cost 0.001
// nats/token against the pretraining unigram), beta CacheBeta, the default
// grid.
func UniformCache(v int) CacheConfig {
	u := make([]float64, v)
	for i := range u {
		u[i] = 1 / float64(v)
	}
	return CacheConfig{Prior: u, Beta: CacheBeta, Grid: DefaultCacheGrid, MaxTotal: 0.8}
}

// planCache is a plan's token cache.
type planCache struct {
	cfg     CacheConfig
	Group   []int          // per plan sequence: its pool
	Weights []CacheWeights // per pool
	pools   []*TokenCounts
	own     []*TokenCounts // per plan sequence: the tokens seen so far
	pending [][]int32      // the tokens of the forward being begun (Observe)
	prompts [][]int32      // per plan sequence: its prompt
	lp      [][]float32    // per plan sequence: its prompt's losses under the plan
	dirty   bool
	ownT    gpu.Tensor  // (N, V) own counts on the device
	poolT   gpu.Tensor  // (G, V)
	priorT  gpu.Tensor  // (V)
	neural  *planNeural // the neural cache (nil: the token cache alone)
	heldOut []float64   // with the neural cache: CacheHeldOut's losses, from the weights' choice
}

// EnableCache gives the plan's CacheAdapter its token cache and its
// neural cache (ncache_runtime.go): seqs are the plan's sequences'
// prompts, pooled by k-means on the plan's features in groups of at most
// batch (all in one pool for an adapter without features). The weights
// are chosen on the prompts' per-position losses and final hidden states
// under the plan, which it computes (one scoring forward).
func (p *Plan) EnableCache(seqs [][]int32, cfg CacheConfig, batch int) error {
	if len(seqs) != len(p.Cluster) {
		return fmt.Errorf("adapt: cache: %d prompts for a plan of %d", len(seqs), len(p.Cluster))
	}
	// Each prompt's per-position losses and unit hidden states under the
	// plan (prompts of one token have none).
	var scored []int
	var ss [][]int32
	for i, s := range seqs {
		if len(s) >= 2 {
			scored, ss = append(scored, i), append(ss, s)
		}
	}
	lp, hid := make([][]float32, len(seqs)), make([][]float32, len(seqs))
	if len(ss) > 0 {
		m := p.rt.M
		sc, h, err := ScoreHiddenChunked(m, ss, func(first, end int) model.Adapter { return p.AdapterOf(scored[first:end], nil) })
		if err != nil {
			return err
		}
		for j, i := range scored {
			lp[i], hid[i] = sc[j].Losses, h[j]
		}
	}
	return p.enableCache(seqs, lp, hid, cfg, batch)
}

// EnableCacheLosses is EnableCache with the prompts' per-position losses
// under the plan already computed (lp[i][j]: the loss of seqs[i][j+1], at
// least len-1 of them; nil for a prompt of one token), as a caller that
// scored the prompts has them; without hidden states, it gives the token
// cache alone.
func (p *Plan) EnableCacheLosses(seqs [][]int32, lp [][]float32, cfg CacheConfig, batch int) error {
	return p.enableCache(seqs, lp, nil, cfg, batch)
}

// EnableCacheScored is EnableCache with the prompts' per-position losses
// and unit hidden states under the plan already computed, as
// ScoreHiddenChunked gives them (hid[i]: len-1 rows of the model's width;
// nil for a prompt of one token): the token and neural caches.
func (p *Plan) EnableCacheScored(seqs [][]int32, lp, hid [][]float32, cfg CacheConfig, batch int) error {
	c := p.rt.M.Cfg.NEmbd
	if len(hid) != len(seqs) {
		return fmt.Errorf("adapt: cache: %d hidden-state rows for %d prompts", len(hid), len(seqs))
	}
	for i, s := range seqs {
		if want := max(len(s)-1, 0) * c; len(hid[i]) != want {
			return fmt.Errorf("adapt: cache: prompt %d has %d tokens and %d hidden values, want %d (width %d)", i, len(s), len(hid[i]), want, c)
		}
	}
	return p.enableCache(seqs, lp, hid, cfg, batch)
}

// enableCache sets up the caches: with hid (each prompt's unit hidden
// states at positions 0 .. len-2) the neural cache too.
//
// Over 80 lines: the checks, the pools and their weights, then the count
// tensors and the key buffer, each freed on a later failure.
func (p *Plan) enableCache(seqs [][]int32, lp, hid [][]float32, cfg CacheConfig, batch int) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	m := p.rt.M
	n, v := len(p.Cluster), m.Cfg.VocabSize
	if len(seqs) != n || len(lp) != n || len(cfg.Prior) != v {
		return fmt.Errorf("adapt: cache: %d prompts and %d loss rows for a plan of %d, a prior of %d for a vocabulary of %d",
			len(seqs), len(lp), n, len(cfg.Prior), v)
	}
	for i, s := range seqs {
		if len(lp[i]) < len(s)-1 {
			return fmt.Errorf("adapt: cache: prompt %d has %d tokens and %d losses", i, len(s), len(lp[i]))
		}
	}
	c := &planCache{cfg: cfg, Group: make([]int, n), own: make([]*TokenCounts, n), prompts: seqs, lp: padLosses(seqs, lp)}
	if hid != nil {
		c.heldOut = make([]float64, n)
	}
	groups, err := p.cachePools(max(batch, 1))
	if err != nil {
		return err
	}
	poolHost := make([]float32, len(groups)*v)
	for gi, g := range groups {
		pool := &TokenCounts{}
		var prompts [][]int32
		var losses [][]float32
		for _, i := range g {
			c.Group[i] = gi
			pool.Add(seqs[i]...)
			prompts, losses = append(prompts, seqs[i]), append(losses, lp[i])
		}
		var w CacheWeights
		if hid != nil {
			var terms []*MixTerms
			w, terms, err = neuralWeights(g, seqs, c.lp, hid, m.Cfg.NEmbd, cfg)
			for j, i := range g {
				if err == nil && len(seqs[i]) >= 2 {
					c.heldOut[i] = w.MixLoss(terms[j], 0, len(seqs[i])-1)
				}
			}
		} else {
			w, err = ChooseCacheWeights(prompts, padLosses(prompts, losses), true, cfg)
		}
		if err != nil {
			return err
		}
		c.pools, c.Weights = append(c.pools, pool), append(c.Weights, w)
		for t, k := range pool.n {
			poolHost[gi*v+int(t)] = float32(k)
		}
	}
	for i := range c.own {
		c.own[i] = &TokenCounts{}
	}
	prior := make([]float32, v)
	for j, x := range cfg.Prior {
		prior[j] = float32(x)
	}
	b := m.B
	if c.priorT, err = uploadF32(b, prior, v); err != nil {
		return err
	}
	if c.poolT, err = uploadF32(b, poolHost, len(groups), v); err != nil {
		c.free(b)
		return err
	}
	if c.ownT, err = uploadF32(b, make([]float32, n*v), n, v); err != nil {
		c.free(b)
		return err
	}
	if hid != nil {
		if c.neural, err = newPlanNeural(b, groups, seqs, hid, m.Cfg.NEmbd, v, m.Cfg.NCtx); err != nil {
			c.free(b)
			return err
		}
	}
	if p.cache != nil {
		p.cache.free(b) // enabled again: the new cache replaces it
	}
	p.cache = c
	return nil
}

// CacheHeldOut is each prompt's summed loss (nats) under the cache, scored
// as the weights were chosen: positions 0 .. len-2, its own counts (and
// keys) its tokens so far, its pool the other members' prompts (never
// itself).
// It is what the cache would have done for each prompt's own text; the
// weights were chosen with the prompt among its pool's members, so it is
// not a held-out measure of the weights.
func (p *Plan) CacheHeldOut() ([]float64, error) {
	c := p.cache
	if c == nil {
		return nil, fmt.Errorf("adapt: the plan has no token cache (EnableCache)")
	}
	if c.heldOut != nil {
		return slices.Clone(c.heldOut), nil
	}
	out := make([]float64, len(c.prompts))
	for i, s := range c.prompts {
		if len(s) < 2 {
			continue
		}
		g := c.Group[i]
		pool := c.pools[g].Clone()
		pool.Remove(s...)
		out[i], _ = c.Weights[g].SequenceLoss(s, c.lp[i], 0, len(s)-1, pool, c.cfg)
	}
	return out, nil
}

// padLosses gives a prompt without per-position losses (one token) zero
// losses of its length - 1 (none): it adds nothing to the weights' choice.
func padLosses(prompts [][]int32, lp [][]float32) [][]float32 {
	out := make([][]float32, len(lp))
	for i, l := range lp {
		out[i] = l
		if l == nil {
			out[i] = make([]float32, max(len(prompts[i])-1, 0))
		}
	}
	return out
}

// cachePools groups the plan's sequences for the cache's pools.
func (p *Plan) cachePools(batch int) ([][]int, error) {
	n := len(p.Cluster)
	if len(p.Features) == 0 || n == 1 {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return [][]int{all}, nil
	}
	res, err := cluster.KMeansHost(p.Features, len(p.Features)/n, cluster.Config{K: cluster.DefaultK(n, batch), Seed: 1})
	if err != nil {
		return nil, err
	}
	var groups [][]int
	for _, bt := range cluster.FormBatches(res.Assign, res.Centroids.K, batch) {
		groups = append(groups, bt.Seqs)
	}
	return groups, nil
}

func uploadF32(b gpu.Backend, data []float32, shape ...int) (gpu.Tensor, error) {
	t, err := b.Alloc(gpu.F32, shape...)
	if err != nil {
		return nil, err
	}
	if err := b.Write(t, data); err != nil {
		b.Free(t)
		return nil, err
	}
	return t, nil
}

func (c *planCache) free(b gpu.Backend) {
	for _, t := range []gpu.Tensor{c.ownT, c.poolT, c.priorT} {
		if t != nil {
			b.Free(t)
		}
	}
	if c.neural != nil {
		c.neural.free(b)
	}
}

// CacheWeightsOf is sequence i's pool and its weights (ok false without
// EnableCache).
func (p *Plan) CacheWeightsOf(i int) (pool int, w CacheWeights, ok bool) {
	if p.cache == nil || i < 0 || i >= len(p.cache.Group) {
		return 0, CacheWeights{}, false
	}
	g := p.cache.Group[i]
	return g, p.cache.Weights[g], true
}

// CacheAdapter is Adapter with the token cache after the head, for
// generation: each forward must give every sequence at most one logits
// row (model.Generate's forwards do; a scoring forward of every position
// is refused, since a row's own counts would include later tokens).
// EnableCache must have run.
func (p *Plan) CacheAdapter(on []bool) (model.Adapter, error) {
	if p.cache == nil {
		return nil, fmt.Errorf("adapt: the plan has no token cache (EnableCache)")
	}
	return cacheAdapter{planAdapter{p: p, on: on}}, nil
}

type cacheAdapter struct{ planAdapter }

// Observe implements model.TokenObserver: the forward's new tokens join
// their sequences' own counts when Begin accepts the forward.
func (a cacheAdapter) Observe(tokens [][]int32) error {
	a.p.cache.pending = tokens
	return nil
}

// commit adds the observed tokens to their sequences' own counts.
func (a cacheAdapter) commit() {
	c := a.p.cache
	for s, ts := range c.pending {
		if i := a.planSeq(int32(s)); i >= 0 && i < len(c.own) && len(ts) > 0 {
			c.own[i].Add(ts...)
			c.dirty = true
			if c.neural != nil {
				c.neural.observe(i, ts)
			}
		}
	}
	c.pending = nil
}

// Begin implements model.Adapter: the plan's pass, then the cache's
// per-row parameters.
func (a cacheAdapter) Begin(rows, head []int32) (model.Pass, error) {
	p, c := a.p, a.p.cache
	seen := map[int32]bool{}
	for _, s := range head {
		if s >= 0 && seen[s] {
			c.pending = nil // the forward does not run: its tokens are not seen
			return nil, fmt.Errorf("adapt: the token cache mixes one logits row per sequence (generation), and this forward asks for several of sequence %d", s)
		}
		seen[s] = true
	}
	a.commit()
	b, v := p.rt.M.B, p.rt.M.Cfg.VocabSize
	if c.dirty {
		dense := make([]float32, len(c.own)*v)
		for i, o := range c.own {
			for t, k := range o.n {
				dense[i*v+int(t)] = float32(k)
			}
		}
		if err := b.Write(c.ownT, dense); err != nil {
			return nil, err
		}
		c.dirty = false
	}
	orow, prow := make([]int, len(head)), make([]int, len(head))
	ws := make([]CacheWeights, len(head))
	ot, pt := make([]float64, len(head)), make([]float64, len(head))
	for r, s := range head {
		orow[r], prow[r] = -1, -1
		if i := a.planSeq(s); i >= 0 && i < len(c.own) {
			g := c.Group[i]
			orow[r], prow[r], ws[r] = i, g, c.Weights[g]
			ot[r], pt[r] = c.own[i].Total, c.pools[g].Total
		}
	}
	var ns *neuralStep
	if c.neural != nil {
		var err error
		if ns, err = c.neural.rows(b, head, a.planSeq, c.Group, c.Weights, ws); err != nil {
			return nil, err
		}
	}
	rp, err := uploadF32(b, CacheRowParams(orow, prow, ws, ot, pt), len(head), 6)
	if err == nil {
		var inner model.Pass
		if inner, err = a.planAdapter.Begin(rows, head); err == nil {
			return &cachePass{Pass: inner, p: p, rp: rp, neural: ns}, nil
		}
		b.Free(rp)
	}
	if ns != nil {
		b.Free(ns.rp)
	}
	return nil, err
}

// cachePass is the plan's pass with the mixture after its logits.
type cachePass struct {
	model.Pass
	p      *Plan
	rp     gpu.Tensor
	neural *neuralStep // nil: the token cache alone
}

// Logits implements model.Pass: the plan's logits (or the tied
// projection's), then log-probabilities, then cache_mix.
func (c *cachePass) Logits(dst, h gpu.Tensor) (bool, error) {
	rt := c.p.rt
	done, err := c.Pass.Logits(dst, h)
	if err != nil {
		return false, err
	}
	b := rt.M.B
	if !done {
		b.MatMul(dst, h, rt.M.W.Head(), nil)
	}
	lp, err := b.Alloc(gpu.F32, dst.Shape()...)
	if err != nil {
		return false, err
	}
	b.LogSoftmax(lp, dst)
	pc := c.p.cache
	rt.ops.CacheMix(dst, lp, pc.ownT, pc.poolT, pc.priorT, c.rp, float32(pc.cfg.Beta))
	b.Free(lp)
	if ns := c.neural; ns != nil {
		nc := pc.neural
		if err := rt.ops.NeuralMix(dst, h, nc.keysT, nc.valsT, ns.rp, ns.most); err != nil {
			return false, err
		}
		for _, w := range ns.written {
			nc.written[w[0]] = max(nc.written[w[0]], w[1])
		}
	}
	return true, nil
}

// End implements model.Pass.
func (c *cachePass) End() {
	c.Pass.End()
	c.p.rt.M.B.Free(c.rp)
	if c.neural != nil {
		c.p.rt.M.B.Free(c.neural.rp)
	}
}
