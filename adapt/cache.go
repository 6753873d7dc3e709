package adapt

import (
	"fmt"
	"math"
)

// The token cache: a training-free adaptation that mixes into the model's
// next-token distribution p the distribution of tokens already seen,
//
//	p'(y) = (1 - own - pool) p(y) + own q_own(y) + pool q_pool(y),
//	q(y)  = (n(y) + beta u(y)) / (N + beta),
//
// where q_own counts the sequence's own tokens so far (its prompt, then
// what it has generated or been scored on) and q_pool the prompts of the
// other sequences of its cluster: the batch-aware half, which lets a
// cluster of inputs in a language or style the model has barely seen
// share what their prompts show. u is a prior over the vocabulary (a
// unigram of the pretraining text) and beta its weight in pseudo-counts.
// The two weights are not trained: each cluster chooses them on its own
// prompts, by the leave-one-out loss of every member's prompt under the
// member's prompt prefix and the other members' prompts (ChooseCacheWeights),
// so a cluster the cache does not help keeps p. This file is the plain-Go
// reference of the method; the evaluation protocol is adaptrun's.

// CacheConfig fixes the cache's prior and the weights it may choose.
type CacheConfig struct {
	Prior []float64 // u (V): a distribution over the vocabulary
	Beta  float64   // pseudo-counts of the prior
	// Grid is the weights tried for own and pool each; a pair is tried
	// when own + pool <= MaxTotal.
	Grid     []float64
	MaxTotal float64
}

// DefaultCacheGrid is the grid of weights the cache chooses from.
var DefaultCacheGrid = []float64{0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5}

// Check reports a config the mixture is not defined for.
func (c CacheConfig) Check() error {
	if len(c.Prior) == 0 {
		return fmt.Errorf("adapt: cache: no prior")
	}
	if !(c.Beta > 0) {
		return fmt.Errorf("adapt: cache: beta %g, want > 0", c.Beta)
	}
	if !(c.MaxTotal > 0 && c.MaxTotal < 1) {
		return fmt.Errorf("adapt: cache: max total weight %g, want in (0, 1)", c.MaxTotal)
	}
	for _, g := range c.Grid {
		if g < 0 || g >= 1 {
			return fmt.Errorf("adapt: cache: grid weight %g, want in [0, 1)", g)
		}
	}
	return nil
}

// UnigramPrior is the add-one unigram distribution of toks over a
// vocabulary of v tokens.
func UnigramPrior(toks []int32, v int) ([]float64, error) {
	u := make([]float64, v)
	for _, t := range toks {
		if t < 0 || int(t) >= v {
			return nil, fmt.Errorf("adapt: cache: token %d outside the vocabulary of %d", t, v)
		}
		u[t]++
	}
	for i := range u {
		u[i] = (u[i] + 1) / (float64(len(toks)) + float64(v))
	}
	return u, nil
}

// TokenCounts are sparse token counts.
type TokenCounts struct {
	n     map[int32]float64
	Total float64
}

// Add counts toks once each.
func (c *TokenCounts) Add(toks ...int32) {
	if c.n == nil {
		c.n = map[int32]float64{}
	}
	for _, t := range toks {
		c.n[t]++
	}
	c.Total += float64(len(toks))
}

// Remove uncounts toks (each must have been added).
func (c *TokenCounts) Remove(toks ...int32) {
	for _, t := range toks {
		c.n[t]--
	}
	c.Total -= float64(len(toks))
}

// Clone copies the counts.
func (c *TokenCounts) Clone() *TokenCounts {
	out := &TokenCounts{n: make(map[int32]float64, len(c.n)), Total: c.Total}
	for t, v := range c.n {
		out.n[t] = v
	}
	return out
}

// Prob is q(y): the smoothed distribution of the counts.
func (c *TokenCounts) Prob(y int32, cfg CacheConfig) float64 {
	return (c.n[y] + cfg.Beta*cfg.Prior[y]) / (c.Total + cfg.Beta)
}

// CacheWeights are a cluster's mixing weights.
type CacheWeights struct {
	Own  float64 `json:"own"`
	Pool float64 `json:"pool"`
	// The neural cache's weights and key sharpness (ncache.go; zero for
	// the token cache alone). ThetaIndex is Theta's row in the terms the
	// weights were chosen on.
	NeuralOwn  float64 `json:"neural_own,omitempty"`
	NeuralPool float64 `json:"neural_pool,omitempty"`
	Theta      float64 `json:"theta,omitempty"`
	ThetaIndex int     `json:"-"`
}

// SequenceLoss scores positions [from, to) of a sequence under the cache:
// lp[j] is the model's loss (nats) of toks[j+1] at position j, the own
// counts hold toks[0..j] when toks[j+1] is scored, and pool (nil: empty)
// the cluster's. It returns the summed loss and the positions scored.
func (w CacheWeights) SequenceLoss(toks []int32, lp []float32, from, to int, pool *TokenCounts, cfg CacheConfig) (float64, int) {
	var own TokenCounts
	own.Add(toks[:from]...)
	if pool == nil || pool.Total == 0 {
		pool, w.Pool = nil, 0 // nothing to mix in: the weight stays with p
	}
	sum := 0.0
	for j := from; j < to; j++ {
		own.Add(toks[j])
		y := toks[j+1]
		p := (1 - w.Own - w.Pool) * math.Exp(-float64(lp[j]))
		p += w.Own * own.Prob(y, cfg)
		if pool != nil {
			p += w.Pool * pool.Prob(y, cfg)
		}
		sum -= math.Log(p)
	}
	return sum, to - from
}

// ChooseCacheWeights picks a cluster's weights: for each pair on the grid,
// the summed loss of every member's prompt (positions 0 .. len-2, lp the
// model's losses there) with the member's own prompt prefix and the other
// members' prompts as the pool; the lowest wins, ties to the smaller
// weights. usePool false keeps pool at 0 (the per-sequence cache). A lone
// member has no pool to learn from and chooses own only.
func ChooseCacheWeights(prompts [][]int32, lp [][]float32, usePool bool, cfg CacheConfig) (CacheWeights, error) {
	if len(prompts) != len(lp) {
		return CacheWeights{}, fmt.Errorf("adapt: cache: %d prompts and %d loss rows", len(prompts), len(lp))
	}
	var all TokenCounts
	for i, p := range prompts {
		if len(lp[i]) < len(p)-1 {
			return CacheWeights{}, fmt.Errorf("adapt: cache: prompt %d has %d tokens and %d losses", i, len(p), len(lp[i]))
		}
		all.Add(p...)
	}
	// Per member and position, the model's probability of the next token
	// and the two caches' (the pool without the member): every pair's
	// loss is then arithmetic on these, the same sums SequenceLoss makes.
	terms := make([][][3]float64, len(prompts))
	hasPool := make([]bool, len(prompts))
	for i, p := range prompts {
		all.Remove(p...)
		hasPool[i] = all.Total != 0
		var own TokenCounts
		for j := 0; j < len(p)-1; j++ {
			own.Add(p[j])
			y := p[j+1]
			terms[i] = append(terms[i], [3]float64{math.Exp(-float64(lp[i][j])), own.Prob(y, cfg), all.Prob(y, cfg)})
		}
		all.Add(p...)
	}
	best, bestLoss := CacheWeights{}, math.Inf(1)
	for _, own := range cfg.Grid {
		for _, pool := range cfg.Grid {
			if own+pool > cfg.MaxTotal || (pool > 0 && (!usePool || len(prompts) < 2)) {
				continue
			}
			sum := 0.0
			for i := range prompts {
				wp := pool
				if !hasPool[i] {
					wp = 0 // nothing to mix in: the weight stays with p
				}
				l := 0.0
				for _, x := range terms[i] {
					p := (1 - own - wp) * x[0]
					p += own * x[1]
					if hasPool[i] {
						p += wp * x[2]
					}
					l -= math.Log(p)
				}
				sum += l
			}
			if sum < bestLoss {
				best, bestLoss = CacheWeights{Own: own, Pool: pool}, sum
			}
		}
	}
	return best, nil
}
