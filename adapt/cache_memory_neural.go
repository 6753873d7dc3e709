package adapt

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// The neural cache in a CacheMemory (MemoryConfig.Width > 0): each pool
// also keeps its prompts' unit hidden states (the keys, valued by the
// token that followed each position) and chooses all four weights and
// theta by leave-one-out over its prompts (ChooseMixWeights), as the
// batch path's pools do (neuralWeights), every member's terms built with
// the member out of both pools.
//
// Incremental terms. A member's neural pool term at its position j is
// num/den, den the sum over the other members' keys k of
// exp(theta (h_j.k - 1)) and num its part whose key's value is the token
// that followed j. Each member keeps these sums (float64, per theta and
// position); a joining prompt adds its keys' contributions to every member
// and gets its own sums over theirs from the same similarities (one
// product per member: O(L_pool L_new C) per join, not PoolTerms' O(P^2 L^2
// C) per choice), and an evicted prompt's contributions are subtracted
// the same way. A member whose pool holds no keys has its sums set to
// exactly zero, and one whose sums a subtraction took nearly all of (the
// evicted keys were far closer to its queries than those left) has them
// recomputed over the keys left: no cancellation residue. Its own-key term, P and the own
// token term do not depend on the pool and are computed once, at its
// join; the pool token term comes from the pool's counts at each choice.
//
// Bound: a pool holds at most NeuralKeys keys (positions), its oldest
// prompts evicted (tokens and keys together) to keep under it, except the
// newest, which stays even when it alone is longer: a pool's keys are at
// most max(NeuralKeys, its longest prompt - 1).

// DefaultMemoryKeys is MemoryConfig.NeuralKeys's default: 2048 keys of a
// GPT-2 large width (1280) for 8 server slots, each with a context of 1024
// own keys, fit WebGPU's 128 MiB storage binding.
const DefaultMemoryKeys = 2048

// neuralMember is one pooled prompt's neural state.
type neuralMember struct {
	hid      []float32   // (l, C) unit hidden states at positions 0 .. l-1, l = len(prompt) - 1
	next     []int32     // (l) the token after each position: the keys' values and the targets
	p, uOwn  []float64   // (l) the model's and the own token cache's probability of next[j]
	nOwn     [][]float64 // (thetas, l) the own neural cache's
	num, den [][]float64 // (thetas, l) the pool sums over the other members' keys
	keys     int         // keys in the sums
}

// newNeuralMember computes a prompt's pool-independent terms.
func newNeuralMember(prompt []int32, lp, hid []float32, c int, cfg CacheConfig, thetas []float64) (*neuralMember, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("adapt: cache memory: an empty prompt")
	}
	l := len(prompt) - 1
	if len(hid) != l*c {
		return nil, fmt.Errorf("adapt: cache memory: %d hidden values for a prompt of %d tokens at width %d, want %d", len(hid), len(prompt), c, l*c)
	}
	t := &MixTerms{}
	if err := TokenTerms(t, prompt, lp[:l], nil, cfg); err != nil {
		return nil, err
	}
	if err := NeuralTerms(t, hid, prompt[1:l+1], nil, c, thetas); err != nil {
		return nil, err
	}
	nm := &neuralMember{hid: append([]float32(nil), hid...), next: append([]int32(nil), prompt[1:l+1]...),
		p: t.P, uOwn: t.UOwn, nOwn: t.NOwn, num: make([][]float64, len(thetas)), den: make([][]float64, len(thetas))}
	for ti := range thetas {
		nm.num[ti], nm.den[ti] = make([]float64, l), make([]float64, l)
	}
	return nm, nil
}

// cancelTol: a subtraction that leaves a sum below this fraction of what
// it took away leaves mostly rounding residue (float64's 1e-16 of the
// larger part), and the member's sums are recomputed instead.
const cancelTol = 1e-6

// pairSums adds (sign +1) or subtracts (-1) the contributions of b's keys to
// a's sums and, when both, of a's keys to b's. Subtracting, it reports
// whether some sum of a lost all but a cancelTol part of itself.
func pairSums(a, b *neuralMember, c int, thetas []float64, sign float64, both bool) (cancelled bool) {
	la, lb := len(a.next), len(b.next)
	if la == 0 || lb == 0 {
		return false
	}
	sim := make([]float32, la*lb)
	blas32.Gemm(blas.NoTrans, blas.Trans, 1, blas32.General{Rows: la, Cols: c, Stride: c, Data: a.hid},
		blas32.General{Rows: lb, Cols: c, Stride: c, Data: b.hid}, 0, blas32.General{Rows: la, Cols: lb, Stride: lb, Data: sim})
	for ti, th := range thetas {
		an, ad, bn, bd := a.num[ti], a.den[ti], b.num[ti], b.den[ti]
		for j := range la {
			row := sim[j*lb : (j+1)*lb]
			yj := a.next[j]
			moved := 0.0
			for k, s := range row {
				e := sign * math.Exp(th*(float64(s)-1))
				moved += e
				ad[j] += e
				if b.next[k] == yj {
					an[j] += e
				}
				if both {
					bd[k] += e
					if yj == b.next[k] {
						bn[k] += e
					}
				}
			}
			cancelled = cancelled || (sign < 0 && ad[j] < -cancelTol*moved)
		}
	}
	a.keys += int(sign) * lb
	if both {
		b.keys += int(sign) * la
	}
	for _, m := range []*neuralMember{a, b} {
		if m.keys == 0 {
			m.clearSums()
		}
	}
	return cancelled && a.keys > 0
}

func (nm *neuralMember) clearSums() {
	for ti := range nm.num {
		clear(nm.num[ti])
		clear(nm.den[ti])
	}
}

// terms is the member's MixTerms with pool counts pool (its own prompt
// not in them).
func (nm *neuralMember) terms(pool *TokenCounts, cfg CacheConfig) *MixTerms {
	l := len(nm.next)
	t := &MixTerms{P: nm.p, UOwn: nm.uOwn, UPool: make([]float64, l), NOwn: nm.nOwn, NPool: make([][]float64, len(nm.num))}
	for j, y := range nm.next {
		t.UPool[j] = nm.p[j]
		if pool.Total > 0 {
			t.UPool[j] = pool.Prob(y, cfg)
		}
	}
	for ti := range nm.num {
		t.NPool[ti] = make([]float64, l)
		for j := range l {
			t.NPool[ti][j] = nm.p[j]
			if nm.keys > 0 {
				t.NPool[ti][j] = nm.num[ti][j] / nm.den[ti][j]
			}
		}
	}
	return t
}

// neuralJoin adds a prompt with its neural state to the pool (the new
// member's sums and the others' updated).
func (c *memCluster) neuralJoin(prompt []int32, lp []float32, nm *neuralMember, width int, thetas []float64) {
	for _, o := range c.nm {
		pairSums(o, nm, width, thetas, 1, true)
	}
	c.prompts = append(c.prompts, append([]int32(nil), prompt...))
	c.losses = append(c.losses, append([]float32(nil), lp...))
	c.counts.Add(prompt...)
	c.nm = append(c.nm, nm)
	c.keys += len(nm.next)
	c.stale = true
}

// neuralEvict drops the oldest prompts beyond window or, but the newest,
// beyond maxKeys keys.
func (c *memCluster) neuralEvict(window, maxKeys, width int, thetas []float64) {
	for len(c.prompts) > window || (len(c.prompts) > 1 && c.keys > maxKeys) {
		old := c.nm[0]
		c.counts.Remove(c.prompts[0]...)
		c.prompts, c.losses, c.nm = c.prompts[1:], c.losses[1:], c.nm[1:]
		c.keys -= len(old.next)
		for i, o := range c.nm {
			if pairSums(o, old, width, thetas, -1, false) {
				// Recompute: the sums over the other members' keys.
				o.clearSums()
				o.keys = 0
				for k, x := range c.nm {
					if k != i {
						pairSums(o, x, width, thetas, 1, false)
					}
				}
			}
		}
		c.stale = true
	}
}

// mixWeights chooses weights by leave-one-out over the pool's members.
func (c *memCluster) mixWeights(cfg CacheConfig, thetas []float64) CacheWeights {
	var members []*MixTerms
	for i, nm := range c.nm {
		c.counts.Remove(c.prompts[i]...)
		members = append(members, nm.terms(&c.counts, cfg))
		c.counts.Add(c.prompts[i]...)
	}
	multi := len(members) > 1
	return ChooseMixWeights(members, MixChoice{Own: true, Pool: multi, NeuralOwn: true, NeuralPool: multi}, cfg, thetas)
}

// poolWeights is the pool's weights, re-chosen if a join or an eviction
// changed its members.
func (c *memCluster) poolWeights(cfg CacheConfig, thetas []float64) CacheWeights {
	if c.stale {
		c.w = CacheWeights{}
		if len(c.nm) > 0 {
			c.w = c.mixWeights(cfg, thetas)
		}
		c.stale = false
	}
	return c.w
}

// neuralKeys copies the pool's keys (its members' hidden states, oldest
// first) and their values.
func (c *memCluster) neuralKeys(width int) *NeuralKeys {
	k := &NeuralKeys{C: width, K: make([]float32, 0, c.keys*width), V: make([]int32, 0, c.keys)}
	for _, nm := range c.nm {
		k.K, k.V = append(k.K, nm.hid...), append(k.V, nm.next...)
	}
	return k
}

// admitNeural is Admit's neural half (m.mu held): the snapshot, then the
// join.
func (m *CacheMemory) admitNeural(c *memCluster, prompt []int32, lp, hid []float32) (MemorySnapshot, error) {
	nm, err := newNeuralMember(prompt, lp, hid, m.mc.Width, m.cfg, m.thetas)
	if err != nil {
		return MemorySnapshot{}, err
	}
	snap := MemorySnapshot{Key: c.key, Pool: c.counts.Clone(), Keys: c.neuralKeys(m.mc.Width), Prompts: len(c.prompts)}
	if !m.mc.WithSelf {
		snap.Weights = c.poolWeights(m.cfg, m.thetas)
	}
	l := len(nm.next)
	c.neuralJoin(prompt, lp[:l], nm, m.mc.Width, m.thetas)
	if m.mc.WithSelf { // the pool with the prompt in, before any eviction: its own term against the snapshot
		snap.Weights = c.poolWeights(m.cfg, m.thetas)
	}
	c.neuralEvict(m.mc.Window, m.mc.NeuralKeys, m.mc.Width, m.thetas)
	return snap, nil
}
