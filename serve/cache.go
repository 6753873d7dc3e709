package serve

import (
	"errors"
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// The token cache as a cluster memory (Options.Cache; the package doc
// describes it). tokenCache is the scheduler's half: the memory, and per
// slot the request's own counts and its pool snapshot on the device; the
// mixture runs after ForwardLast on every row, one LogSoftmax and one
// adapt.Ops.CacheMix per step, each row reading only its slot's counts.

// CacheModel is what Options.Cache asks of a Model: prompts' losses under
// the served model (the memory chooses its weights on them) and the keys
// of the memory's pools. Base and Adaptive implement it.
type CacheModel interface {
	// PromptLosses returns per prompt the served model's loss (nats) of
	// each token after the first (len - 1 values), with adaptation ad[i]
	// (Cluster as grouped at admission).
	PromptLosses(prompts [][]int32, ad []Adapter) ([][]float32, error)
	// MemoryKeys returns per prompt its training centroid (-1: none) and
	// its feature (nil: none; with no centroid either, the global pool).
	MemoryKeys(prompts [][]int32, ad []Adapter) (trained []int, feats [][]float32, err error)
	// MemoryRadius is the default radius (squared feature distance) of the
	// memory's run-time clusters: the adapter's gate radius, 0 for none.
	MemoryRadius() float64
}

// CacheInfo describes a choice's token cache (Extension.Cache).
type CacheInfo struct {
	Pool        string  `json:"pool"`         // its memory pool: "centroid K", "run-time cluster K" or "global"
	PoolPrompts int     `json:"pool_prompts"` // earlier prompts in the pool at its admission
	Own         float64 `json:"own"`          // the weight of its own tokens
	PoolWeight  float64 `json:"pool_weight"`  // the weight of the pool
	// The neural cache's (Options.CacheNeural; absent without it): the
	// pool's keys at its admission, the weights of its own and the pool's
	// keys, and the keys' sharpness theta.
	PoolKeys   int     `json:"pool_keys,omitempty"`
	NeuralOwn  float64 `json:"neural_own,omitempty"`
	NeuralPool float64 `json:"neural_pool,omitempty"`
	Theta      float64 `json:"theta,omitempty"`
}

// tokenCache is the scheduler's token cache (loop goroutine only, but
// the memory, which Stats reads too).
type tokenCache struct {
	mem  *adapt.CacheMemory
	mc   adapt.MemoryConfig
	cm   CacheModel
	ops  adapt.Ops
	v    int
	beta float32
	// Per slot: own and pool counts (slots, V) on the host and device,
	// their totals, the weights, and whether the slot's sequence uses the
	// cache.
	own, pool           []float32
	ownT, poolT, priorT gpu.Tensor
	ownDirty, poolDirty bool
	ownTotal, poolTotal []float64
	w                   []adapt.CacheWeights
	on                  []bool
	// The neural cache (Options.CacheNeural; nil: off).
	nm NeuralModel
	nc *slotNeural
	// adm admits prompts to mem off the loop (cache_admit.go).
	adm *admitter
}

// newTokenCache checks that m can run the cache and allocates its state
// for slots sequences.
func newTokenCache(m Model, opt Options) (*tokenCache, error) {
	cm, ok := m.(CacheModel)
	if !ok {
		return nil, fmt.Errorf("serve: Options.Cache: this model (%T) cannot score prompts for the token cache (serve a Base or an Adaptive)", m)
	}
	v := m.Config().VocabSize
	cfg := adapt.UniformCache(v)
	radius := opt.CacheRadius
	if radius == 0 {
		radius = cm.MemoryRadius()
	}
	mc := adapt.MemoryConfig{Window: opt.CacheWindow, Clusters: opt.CacheClusters, Radius: radius,
		WithSelf: true} // on the benchmark's stream, -0.029 nats/token against the pool's own weights (docs/adapt-bench/cache)
	var nm NeuralModel
	if opt.CacheNeural {
		if nm, ok = m.(NeuralModel); !ok {
			return nil, fmt.Errorf("serve: Options.CacheNeural: this model (%T) cannot give its hidden states for the neural cache (serve a Base or an Adaptive)", m)
		}
		mc.Width, mc.NeuralKeys, mc.MaxKeys = m.Config().NEmbd, opt.CacheKeys, opt.CacheMaxKeys
	}
	mem, err := adapt.NewCacheMemory(cfg, mc)
	if err != nil {
		return nil, fmt.Errorf("serve: token cache: %w", err)
	}
	tc := &tokenCache{mem: mem, mc: mc, cm: cm, v: v, beta: float32(cfg.Beta),
		own: make([]float32, opt.Slots*v), pool: make([]float32, opt.Slots*v),
		ownTotal: make([]float64, opt.Slots), poolTotal: make([]float64, opt.Slots),
		w: make([]adapt.CacheWeights, opt.Slots), on: make([]bool, opt.Slots), nm: nm, adm: newAdmitter(mem)}
	if err := tc.alloc(m.Backend(), cfg.Prior); err != nil {
		tc.free()
		return nil, err
	}
	if nm != nil {
		keys := mc.NeuralKeys
		if keys == 0 {
			keys = adapt.DefaultMemoryKeys
		}
		if tc.nc, err = newSlotNeural(tc.ops, opt.Slots, m.Config().NCtx, keys, m.Config().NEmbd, v); err != nil {
			tc.free()
			return nil, err
		}
	}
	return tc, nil
}

// alloc puts the counts and the prior on the device.
func (tc *tokenCache) alloc(b gpu.Backend, prior []float64) (err error) {
	defer func() {
		if r := recover(); r != nil { // a backend without the adaptation kernels
			err = fmt.Errorf("serve: token cache: %v", r)
		}
	}()
	tc.ops = adapt.New(b)
	slots := len(tc.on)
	up := func(data []float32, shape ...int) (gpu.Tensor, error) {
		t, err := b.Alloc(gpu.F32, shape...)
		if err != nil {
			return nil, fmt.Errorf("serve: token cache: %w", err)
		}
		return t, b.Write(t, data)
	}
	p := make([]float32, tc.v)
	for i, x := range prior {
		p[i] = float32(x)
	}
	if tc.priorT, err = up(p, tc.v); err != nil {
		return err
	}
	if tc.ownT, err = up(tc.own, slots, tc.v); err != nil {
		return err
	}
	tc.poolT, err = up(tc.pool, slots, tc.v)
	return err
}

func (tc *tokenCache) free() {
	if tc.adm != nil {
		tc.adm.close()
		tc.adm = nil
	}
	for _, t := range []gpu.Tensor{tc.ownT, tc.poolT, tc.priorT} {
		if t != nil && tc.ops != nil {
			tc.ops.Free(t)
		}
	}
	tc.ownT, tc.poolT, tc.priorT = nil, nil, nil
	if tc.nc != nil {
		tc.nc.free(tc.ops.Backend())
		tc.nc = nil
	}
}

// cacheSnap is a prompt's admission to the memory, shared by the choices
// of that prompt.
type cacheSnap struct {
	snap adapt.MemorySnapshot
	info *CacheInfo
	hid  []float32 // the neural cache's: the prompt's unit hidden states (its own keys)
}

// install gives slot b a fresh sequence of prompt with snapshot c: own
// counts empty, the pool's counts and weights as admitted, and with the
// neural cache the pool's keys and the prompt's own.
func (tc *tokenCache) install(b int, prompt []int32, c *cacheSnap) error {
	v := tc.v
	clear(tc.own[b*v : (b+1)*v])
	row := tc.pool[b*v : (b+1)*v]
	clear(row)
	c.snap.Pool.Each(func(y int32, n float64) { row[y] = float32(n) })
	tc.ownTotal[b], tc.poolTotal[b] = 0, c.snap.Pool.Total
	tc.w[b], tc.on[b] = c.snap.Weights, true
	tc.ownDirty, tc.poolDirty = true, true
	if tc.nc != nil {
		if err := tc.nc.install(b, c.snap.Keys, prompt, c.hid); err != nil {
			tc.on[b] = false
			return err
		}
	}
	return nil
}

// mix turns the step's logits (slots, V) into the cache's mixture of
// log-probabilities (the caller frees both): the tokens fed this step join
// their slots' own counts first (a row predicts the token after them).
func (tc *tokenCache) mix(logits gpu.Tensor, tokens [][]int32) (gpu.Tensor, error) {
	v, slots := tc.v, len(tc.on)
	for b, ts := range tokens {
		if tc.on[b] && len(ts) > 0 {
			for _, t := range ts {
				tc.own[b*v+int(t)]++
			}
			tc.ownTotal[b] += float64(len(ts))
			tc.ownDirty = true
			if tc.nc != nil {
				tc.nc.feed(b, ts)
			}
		}
	}
	b := tc.ops.Backend()
	ws, nrpT, most, err := tc.neuralStep(tokens)
	if err != nil {
		return nil, err
	}
	if nrpT != nil {
		defer b.Free(nrpT)
	}
	if tc.ownDirty {
		if err := b.Write(tc.ownT, tc.own); err != nil {
			return nil, err
		}
		tc.ownDirty = false
	}
	if tc.poolDirty {
		if err := b.Write(tc.poolT, tc.pool); err != nil {
			return nil, err
		}
		tc.poolDirty = false
	}
	orow, prow := make([]int, slots), make([]int, slots)
	for r := range slots {
		orow[r], prow[r] = -1, -1
		if tc.on[r] {
			orow[r], prow[r] = r, r
		}
	}
	rp, err := b.Alloc(gpu.F32, slots, 6)
	if err != nil {
		return nil, err
	}
	defer b.Free(rp)
	if err := b.Write(rp, adapt.CacheRowParams(orow, prow, ws, tc.ownTotal, tc.poolTotal)); err != nil {
		return nil, err
	}
	lp, err := b.Alloc(gpu.F32, slots, v)
	if err != nil {
		return nil, err
	}
	defer b.Free(lp)
	dst, err := b.Alloc(gpu.F32, slots, v)
	if err != nil {
		return nil, err
	}
	b.LogSoftmax(lp, logits)
	tc.ops.CacheMix(dst, lp, tc.ownT, tc.poolT, tc.priorT, rp, tc.beta)
	if nrpT != nil {
		if err := tc.ops.NeuralMix(dst, tc.nc.hidT, tc.nc.keysT, tc.nc.valsT, nrpT, most); err != nil {
			b.Free(dst)
			return nil, err
		}
	}
	return dst, nil
}

// neuralStep is the token weights CacheMix runs with this step (tc.w, or
// rescaled for the neural cache) and with the neural cache NeuralMix's row
// parameters on the device (the caller frees them) and their most keys;
// the keys' values go up first if they changed.
func (tc *tokenCache) neuralStep(tokens [][]int32) ([]adapt.CacheWeights, gpu.Tensor, int, error) {
	if tc.nc == nil {
		return tc.w, nil, 0, nil
	}
	b := tc.ops.Backend()
	if err := tc.nc.upload(b); err != nil {
		return nil, nil, 0, err
	}
	ws := slices.Clone(tc.w)
	rp, most := tc.nc.rows(tc.on, tokens, tc.w, ws)
	t, err := b.Alloc(gpu.F32, len(tc.on), 8)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := b.Write(t, rp); err != nil {
		b.Free(t)
		return nil, nil, 0, err
	}
	return ws, t, most, nil
}

// cacheAdmit admits the prompts of the sequences just put into slots
// (after group gave them clusters) to the memory, in admission order: the
// device half here, the memory's on the admitter (cache_admit.go), which
// installs each slot's snapshot when it is done; until then the slot sits
// out the steps. The choices of one prompt share the snapshot its first
// choice got. A task with NoCache is neither admitted nor mixed. On an
// error their runs fail.
func (s *Scheduler) cacheAdmit(slots []int) {
	tc := s.tc
	if tc == nil {
		return
	}
	var job admitJob
	var ads []Adapter
	for _, b := range slots {
		q := s.slots[b]
		if q == nil { // failed in group
			continue
		}
		if q.run.task.NoCache {
			tc.on[b] = false // the base distribution: no own or pool counts mixed in
			continue
		}
		st := &q.run.state
		if st.snaps == nil {
			st.snaps, st.pending = map[int]*cacheSnap{}, map[int]bool{}
		}
		pi := q.index / q.run.task.N
		if c := st.snaps[pi]; c != nil {
			s.cacheInstall(b, q, c)
			continue
		}
		q.cacheWait = true
		if !st.pending[pi] {
			st.pending[pi] = true
			job.keys, job.prompts, ads = append(job.keys, snapKey{q.run, pi}), append(job.prompts, q.prompt), append(ads, q.adapt)
		}
	}
	if len(job.keys) == 0 {
		return
	}
	if err := s.cacheDevice(&job, ads); err != nil {
		if errors.Is(err, gpu.ErrDeviceLost) {
			s.stepFailed(err)
			return
		}
		s.met.failed.Inc()
		for _, k := range job.keys {
			delete(k.run.state.pending, k.pi)
		}
		for b, q := range s.slots {
			if q != nil && q.cacheWait && slices.Contains(job.keys, snapKey{q.run, q.index / q.run.task.N}) {
				q.cacheWait = false
				q.run.end(fmt.Errorf("serve: token cache: %w", err))
				s.free(b)
			}
		}
		return
	}
	tc.adm.submit(job)
}

// cacheDevice is an admission's device half: the prompts' losses (and
// hidden states) under the served model and their memory keys, into job;
// a programmer error's panic is recovered into an error.
func (s *Scheduler) cacheDevice(job *admitJob, ads []Adapter) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serve: internal error: %v", r)
		}
	}()
	tc, n := s.tc, len(job.prompts)
	if tc.nm != nil {
		job.lps, job.hids, err = tc.nm.PromptHidden(job.prompts, ads)
	} else {
		job.lps, err = tc.cm.PromptLosses(job.prompts, ads)
		job.hids = make([][]float32, n)
	}
	if err != nil {
		return err
	}
	if job.trained, job.feats, err = tc.cm.MemoryKeys(job.prompts, ads); err != nil {
		return err
	}
	if len(job.lps) != n || len(job.hids) != n || len(job.trained) != n || len(job.feats) != n {
		return fmt.Errorf("serve: internal error: %d prompts, %d loss rows, %d hidden rows, %d keys, %d features",
			n, len(job.lps), len(job.hids), len(job.trained), len(job.feats))
	}
	return nil
}

// MemoryBound is the most neural keys the cache memory can hold over all
// its pools and the host bytes they take (ok false: the neural cache is
// off): one pool per training centroid of an online adapter, the
// run-time clusters and the global pool, at most CacheKeys each, or
// CacheMaxKeys in all when that is less.
func (s *Scheduler) MemoryBound() (keys, bytes int, ok bool) {
	if s.tc == nil || s.tc.nc == nil {
		return 0, 0, false
	}
	trained := 0
	if c, ok := s.tc.cm.(interface{ MemoryCentroids() int }); ok {
		trained = c.MemoryCentroids()
	}
	keys = s.tc.mc.WorstKeys(trained)
	return keys, keys * s.tc.mc.KeyBytes(), true
}

// MemoryStats is the token cache memory's size (ok false: Options.Cache
// is off).
func (s *Scheduler) MemoryStats() (adapt.MemoryStats, bool) {
	if s.tc == nil {
		return adapt.MemoryStats{}, false
	}
	return s.tc.mem.Stats(), true
}
