package adapt

import (
	"fmt"
	"math"
	"slices"
	"sync"
)

// CacheMemory is the token cache for inputs that arrive one by one (a
// server), where a pool cannot be a batch's k-means cluster: a memory of
// pools keyed by clusters found at inference time. An input the adapter
// assigns to a training centroid uses that centroid's pool; an input with
// no such cluster (the gate keeps it at the base model: far from every
// centroid) joins the nearest run-time cluster whose running-mean centroid
// lies within Radius (squared distance) of its feature, or starts a new
// one (leader clustering); at most Clusters run-time clusters are kept,
// the least recently used evicted. An input without a feature (a model
// without an adapter) uses the one global pool.
//
// Each pool keeps its Window most recent prompts, their token counts and
// their per-position losses under the served model, and re-chooses its
// weights (ChooseCacheWeights, leave-one-out over its prompts) whenever a
// prompt joins or leaves. Admit hands the input a snapshot of its pool as
// it stands BEFORE the input's own prompt joins: the pool it is served
// with excludes itself (its prompt is in its own counts anyway), as in the
// leave-one-out choice of the weights, and what it generates depends only
// on the memory at its admission. The weights are the pool's (chosen on
// its prompts alone; an empty pool's are zero: p unchanged), or with
// MemoryConfig.WithSelf chosen at admission over the pool's prompts and
// the input's own, its own term scored against the pool it is served with.
// With MemoryConfig.Width the pools also keep their prompts' hidden states
// for the neural cache (cache_memory_neural.go): AdmitHidden's snapshot
// carries the pool's keys and all four weights.
//
// Methods are safe for concurrent use.
type CacheMemory struct {
	cfg    CacheConfig
	mc     MemoryConfig
	thetas []float64 // the neural cache's (DefaultThetas)

	mu      sync.Mutex
	trained map[int]*memCluster
	run     []*memCluster // run-time clusters, any order
	global  *memCluster
	clock   uint64 // admissions so far: the LRU's time
	nextRun int    // the next run-time cluster's serial
	evicted int
}

// MemoryConfig bounds a CacheMemory.
type MemoryConfig struct {
	Window   int     // prompts a pool keeps (the most recent); default DefaultMemoryWindow
	Clusters int     // run-time clusters kept (least recently used evicted); default DefaultMemoryClusters
	Radius   float64 // squared feature distance within which an input joins a run-time cluster; 0: any (one run-time cluster)
	// WithSelf chooses an input's weights at its admission over its pool's
	// prompts AND its own prompt (whose term is scored against the pool it
	// is served with), instead of taking the pool's weights, chosen over
	// the pool's prompts alone: a new pool then gets the own-only weight
	// its prompt supports rather than none.
	WithSelf bool
	// Width > 0 gives the memory the neural cache (cache_memory_neural.go)
	// over hidden states of that width: AdmitHidden then takes each
	// prompt's unit hidden states, and Admit is refused.
	Width int
	// NeuralKeys bounds the keys (prompt positions) a pool keeps with the
	// neural cache, its oldest prompts evicted; default DefaultMemoryKeys.
	// A pool holds NeuralKeys x Width float32 keys and 3 x len(thetas) + 2
	// float64 terms per key (112 bytes with DefaultThetas).
	NeuralKeys int
	// MaxKeys > 0 bounds the neural keys held over all pools (the host
	// memory's bound: KeyBytes each): after an admission the least
	// recently used pools other than the one admitted to are evicted
	// whole until the rest hold at most MaxKeys. 0: no bound beyond
	// (centroids + Clusters + 1) x NeuralKeys (WorstKeys).
	MaxKeys int
}

// KeyBytes is the host memory one neural key takes in a pool: its Width
// float32 values and its leave-one-out terms.
func (mc MemoryConfig) KeyBytes() int {
	return 4*mc.Width + 8*(3*len(DefaultThetas)+2)
}

// WorstKeys is the most neural keys a memory of mc holds over all its
// pools when the adapter has trained centroids: one pool per centroid,
// Clusters run-time pools and the global pool, each at most NeuralKeys
// (defaults filled in), or MaxKeys when that is less.
func (mc MemoryConfig) WorstKeys(trained int) int {
	keys, clusters := mc.NeuralKeys, mc.Clusters
	if keys == 0 {
		keys = DefaultMemoryKeys
	}
	if clusters == 0 {
		clusters = DefaultMemoryClusters
	}
	n := (trained + clusters + 1) * keys
	if mc.MaxKeys > 0 {
		n = min(n, mc.MaxKeys)
	}
	return n
}

// Defaults of MemoryConfig.
const (
	DefaultMemoryWindow   = 64
	DefaultMemoryClusters = 64
)

// MemoryKey names a memory pool: a training centroid's (Trained >= 0), a
// run-time cluster's (Run >= 0, serials never reused), or the global pool
// (both -1).
type MemoryKey struct {
	Trained int `json:"trained"`
	Run     int `json:"run"`
}

func (k MemoryKey) String() string {
	switch {
	case k.Trained >= 0:
		return fmt.Sprintf("centroid %d", k.Trained)
	case k.Run >= 0:
		return fmt.Sprintf("run-time cluster %d", k.Run)
	}
	return "global"
}

// MemorySnapshot is what an admitted input is served with: its pool's
// counts (a copy) and weights as they stood before it joined.
type MemorySnapshot struct {
	Key     MemoryKey
	Pool    *TokenCounts
	Keys    *NeuralKeys // the neural cache's pool keys (nil: a memory without it)
	Weights CacheWeights
	Prompts int // prompts in the pool
}

// MemoryStats describe a memory's size.
type MemoryStats struct {
	Clusters    int `json:"clusters"`     // pools holding at least one prompt
	RunClusters int `json:"run_clusters"` // run-time clusters (empty ones included)
	Prompts     int `json:"prompts"`      // prompts pooled, over all pools
	Tokens      int `json:"tokens"`       // their tokens
	Evicted     int `json:"evicted"`      // pools evicted so far: run-time clusters beyond Clusters, any pool beyond MaxKeys
	Keys        int `json:"keys"`         // neural cache keys held, over all pools
}

type memCluster struct {
	key      MemoryKey
	prompts  [][]int32   // oldest first
	losses   [][]float32 // per prompt: its per-position losses (len - 1)
	counts   TokenCounts
	w        CacheWeights
	centroid []float64 // run-time clusters: the running mean of their members' features
	members  int       // features averaged into centroid
	used     uint64
	// The neural cache's (nil, 0 without it): per prompt its state, the
	// keys held, and whether w must be re-chosen.
	nm    []*neuralMember
	keys  int
	stale bool
}

// NewCacheMemory returns an empty memory.
func NewCacheMemory(cfg CacheConfig, mc MemoryConfig) (*CacheMemory, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if mc.Window < 0 || mc.Clusters < 0 || mc.Radius < 0 || math.IsNaN(mc.Radius) || mc.Width < 0 || mc.NeuralKeys < 0 || mc.MaxKeys < 0 {
		return nil, fmt.Errorf("adapt: cache memory: window %d, clusters %d, radius %g, width %d, keys %d, max keys %d: want values >= 0 (0: the default)",
			mc.Window, mc.Clusters, mc.Radius, mc.Width, mc.NeuralKeys, mc.MaxKeys)
	}
	if mc.Width == 0 && mc.MaxKeys != 0 {
		return nil, fmt.Errorf("adapt: cache memory: a bound of %d neural keys without a hidden width (MemoryConfig.Width)", mc.MaxKeys)
	}
	if mc.Width == 0 && mc.NeuralKeys != 0 {
		return nil, fmt.Errorf("adapt: cache memory: %d neural keys without a hidden width (MemoryConfig.Width)", mc.NeuralKeys)
	}
	if mc.Width > 0 && mc.NeuralKeys == 0 {
		mc.NeuralKeys = DefaultMemoryKeys
	}
	if mc.Window == 0 {
		mc.Window = DefaultMemoryWindow
	}
	if mc.Clusters == 0 {
		mc.Clusters = DefaultMemoryClusters
	}
	return &CacheMemory{cfg: cfg, mc: mc, thetas: DefaultThetas, trained: map[int]*memCluster{}}, nil
}

// Config is the memory's cache config.
func (m *CacheMemory) Config() CacheConfig { return m.cfg }

// Admit serves one input and then remembers its prompt: trained is its
// training centroid (-1: none), feat its feature (nil: none, the global
// pool when trained is -1 too), lp the served model's per-position losses
// of prompt (len(prompt) - 1 of them, lp[j] the loss of prompt[j+1]). It
// returns the snapshot of the input's pool taken before the prompt joined.
func (m *CacheMemory) Admit(trained int, feat []float32, prompt []int32, lp []float32) (MemorySnapshot, error) {
	return m.AdmitHidden(trained, feat, prompt, lp, nil)
}

// AdmitHidden is Admit for a memory with the neural cache
// (MemoryConfig.Width > 0): hid holds the prompt's unit hidden states at
// positions 0 .. len-2 ((len - 1) * Width values; ScoreHidden's), and the
// snapshot the pool's keys and all four weights. A memory without it
// takes hid nil.
func (m *CacheMemory) AdmitHidden(trained int, feat []float32, prompt []int32, lp, hid []float32) (MemorySnapshot, error) {
	if (hid == nil) != (m.mc.Width == 0) {
		return MemorySnapshot{}, fmt.Errorf("adapt: cache memory: hidden states given: %v, the memory's width %d (hidden states go with a width > 0)", hid != nil, m.mc.Width)
	}
	if len(lp) < len(prompt)-1 {
		return MemorySnapshot{}, fmt.Errorf("adapt: cache memory: a prompt of %d tokens with %d losses", len(prompt), len(lp))
	}
	for _, t := range prompt {
		if t < 0 || int(t) >= len(m.cfg.Prior) {
			return MemorySnapshot{}, fmt.Errorf("adapt: cache memory: token %d outside the vocabulary of %d", t, len(m.cfg.Prior))
		}
	}
	// A NaN or Inf feature is at no distance from any centroid: it would
	// start a run-time cluster of its own (evicting a live one) whose
	// centroid no later input can ever reach.
	for j, x := range feat {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return MemorySnapshot{}, fmt.Errorf("adapt: cache memory: feature value %d is %g", j, x)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	c, err := m.find(trained, feat)
	if err != nil {
		return MemorySnapshot{}, err
	}
	c.used = m.clock
	if m.mc.Width > 0 {
		snap, err := m.admitNeural(c, prompt, lp, hid)
		if err == nil {
			m.bound(c)
		}
		return snap, err
	}
	snap := MemorySnapshot{Key: c.key, Pool: c.counts.Clone(), Weights: c.w, Prompts: len(c.prompts)}
	if m.mc.WithSelf {
		w, err := ChooseCacheWeights(append(slices.Clip(c.prompts), prompt), append(slices.Clip(c.losses), lp[:max(len(prompt)-1, 0)]), true, m.cfg)
		if err != nil {
			return MemorySnapshot{}, err
		}
		snap.Weights = w
	}
	c.join(prompt, lp[:max(len(prompt)-1, 0)], m.mc.Window, m.cfg)
	return snap, nil
}

// find returns the input's pool, creating (and evicting) as needed. m.mu held.
func (m *CacheMemory) find(trained int, feat []float32) (*memCluster, error) {
	switch {
	case trained >= 0:
		c := m.trained[trained]
		if c == nil {
			c = &memCluster{key: MemoryKey{Trained: trained, Run: -1}}
			m.trained[trained] = c
		}
		return c, nil
	case feat == nil:
		if m.global == nil {
			m.global = &memCluster{key: MemoryKey{Trained: -1, Run: -1}}
		}
		return m.global, nil
	}
	best, bestD := -1, math.Inf(1)
	for i, c := range m.run {
		if len(c.centroid) != len(feat) {
			return nil, fmt.Errorf("adapt: cache memory: a feature of width %d for clusters of width %d", len(feat), len(c.centroid))
		}
		if d := sqDist(c.centroid, feat); d < bestD {
			best, bestD = i, d
		}
	}
	if best >= 0 && (m.mc.Radius == 0 || bestD <= m.mc.Radius) {
		c := m.run[best]
		c.members++
		for j, x := range feat {
			c.centroid[j] += (float64(x) - c.centroid[j]) / float64(c.members)
		}
		return c, nil
	}
	if len(m.run) >= m.mc.Clusters {
		lru := 0
		for i, c := range m.run {
			if c.used < m.run[lru].used {
				lru = i
			}
		}
		m.run = append(m.run[:lru], m.run[lru+1:]...)
		m.evicted++
	}
	c := &memCluster{key: MemoryKey{Trained: -1, Run: m.nextRun}, centroid: make([]float64, len(feat)), members: 1}
	m.nextRun++
	for j, x := range feat {
		c.centroid[j] = float64(x)
	}
	m.run = append(m.run, c)
	return c, nil
}

// bound evicts whole least recently used pools other than keep until the
// neural keys held are within MaxKeys. m.mu held.
func (m *CacheMemory) bound(keep *memCluster) {
	if m.mc.MaxKeys <= 0 {
		return
	}
	for {
		total := 0
		var lru *memCluster
		m.each(func(c *memCluster) {
			total += c.keys
			if c != keep && c.keys > 0 && (lru == nil || c.used < lru.used) {
				lru = c
			}
		})
		if total <= m.mc.MaxKeys || lru == nil {
			return
		}
		m.drop(lru)
	}
}

// each calls f on every pool. m.mu held.
func (m *CacheMemory) each(f func(c *memCluster)) {
	for _, c := range m.trained {
		f(c)
	}
	for _, c := range m.run {
		f(c)
	}
	if m.global != nil {
		f(m.global)
	}
}

// drop evicts pool c. m.mu held.
func (m *CacheMemory) drop(c *memCluster) {
	switch {
	case c.key.Trained >= 0:
		delete(m.trained, c.key.Trained)
	case c.key.Run >= 0:
		m.run = slices.DeleteFunc(m.run, func(x *memCluster) bool { return x == c })
	default:
		m.global = nil
	}
	m.evicted++
}

func sqDist(c []float64, x []float32) float64 {
	var s float64
	for j, v := range x {
		e := float64(v) - c[j]
		s += e * e
	}
	return s
}

// join adds a prompt to the pool, drops the oldest beyond window and
// re-chooses the weights.
func (c *memCluster) join(prompt []int32, lp []float32, window int, cfg CacheConfig) {
	c.prompts = append(c.prompts, append([]int32(nil), prompt...))
	c.losses = append(c.losses, append([]float32(nil), lp...))
	c.counts.Add(prompt...)
	for len(c.prompts) > window {
		c.counts.Remove(c.prompts[0]...)
		c.prompts, c.losses = c.prompts[1:], c.losses[1:]
	}
	w, err := ChooseCacheWeights(c.prompts, c.losses, true, cfg)
	if err != nil {
		panic("adapt: cache memory: " + err.Error()) // the lengths were checked in Admit
	}
	c.w = w
}

// Stats describe the memory's size now.
func (m *CacheMemory) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := MemoryStats{RunClusters: len(m.run), Evicted: m.evicted}
	m.each(func(c *memCluster) {
		if len(c.prompts) > 0 {
			s.Clusters++
			s.Prompts += len(c.prompts)
			s.Tokens += int(c.counts.Total)
			s.Keys += c.keys
		}
	})
	return s
}

// Pool is a copy of key's pool now (ok false: no such pool, or evicted).
func (m *CacheMemory) Pool(key MemoryKey) (MemorySnapshot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var c *memCluster
	switch {
	case key.Trained >= 0:
		c = m.trained[key.Trained]
	case key.Run >= 0:
		for _, x := range m.run {
			if x.key == key {
				c = x
			}
		}
	default:
		c = m.global
	}
	if c == nil {
		return MemorySnapshot{}, false
	}
	snap := MemorySnapshot{Key: c.key, Pool: c.counts.Clone(), Weights: c.w, Prompts: len(c.prompts)}
	if m.mc.Width > 0 {
		snap.Keys, snap.Weights = c.neuralKeys(m.mc.Width), c.poolWeights(m.cfg, m.thetas)
	}
	return snap, true
}

// Count is the pool's count of token y.
func (c *TokenCounts) Count(y int32) float64 { return c.n[y] }

// Each calls f for every token with a nonzero count.
func (c *TokenCounts) Each(f func(y int32, n float64)) {
	for t, v := range c.n {
		if v != 0 {
			f(t, v)
		}
	}
}
