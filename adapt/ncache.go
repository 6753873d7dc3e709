package adapt

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// The neural cache: the token cache (cache.go) with keys. Where the token
// cache's q counts which tokens were seen, the neural cache asks which
// tokens followed contexts like this one: every position j the model has
// run over leaves a key, its final hidden state h_j (the ln_f output the
// head reads), unit-normalised, with the value x_{j+1}, the token that
// followed it; a query h (the position being predicted, unit-normalised)
// reads
//
//	q_n(y) = sum_{k: v_k = y} exp(theta (h.k - 1)) / sum_k exp(theta (h.k - 1))
//
// from a key set. Own keys are the sequence's earlier positions (the
// continuous cache of Grave et al., per sequence); pool keys are the
// positions of the other prompts of its cluster: the batch-aware half,
// where inputs grouped at inference time lend each other what followed
// their contexts. The full mixture is
//
//	p' = (1 - own - pool - nOwn - nPool) p + own q_own + pool q_pool + nOwn q_nOwn + nPool q_nPool,
//
// a component with no keys (or no counts) giving its weight back to p.
// The four weights and theta are chosen per cluster on its prompts, by
// leave-one-out, as the token cache's two are (ChooseMixWeights).

// DefaultThetas are the key sharpnesses a cluster chooses from.
var DefaultThetas = []float64{5, 10, 20, 40}

// UnitRows returns the rows of x (n, c) scaled to unit L2 norm (a zero
// row stays zero).
func UnitRows(x []float32, c int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r+c <= len(x); r += c {
		var ss float64
		for _, v := range x[r : r+c] {
			ss += float64(v) * float64(v)
		}
		if ss == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(ss))
		for k := r; k < r+c; k++ {
			out[k] = x[k] * inv
		}
	}
	return out
}

// NeuralKeys is a key set: unit rows and the token that followed each.
type NeuralKeys struct {
	C int
	K []float32 // (n, C)
	V []int32   // (n)
}

// Len is the number of keys.
func (k *NeuralKeys) Len() int { return len(k.V) }

// Add appends keys: unit rows (len(next), C) and their next tokens.
func (k *NeuralKeys) Add(unit []float32, next []int32) error {
	if k.C <= 0 || len(unit) != len(next)*k.C {
		return fmt.Errorf("adapt: neural cache: %d values for %d keys of width %d", len(unit), len(next), k.C)
	}
	k.K, k.V = append(k.K, unit...), append(k.V, next...)
	return nil
}

// MixTerms are, per position j of a sequence (predicting its token j+1),
// the probability of that token under the model and under each cache
// component; NOwn and NPool hold one row per theta. A component that has
// nothing to offer at j holds P[j] there, so its weight goes to p.
type MixTerms struct {
	P, UOwn, UPool []float64
	NOwn, NPool    [][]float64
}

// NeuralTerms fills t's neural rows for a sequence whose positions have
// the unit hidden states q (L, C) and next tokens next (L): own keys are
// the sequence's positions before j, pool keys pool's (nil or empty:
// none). t.P must be filled.
func NeuralTerms(t *MixTerms, q []float32, next []int32, pool *NeuralKeys, c int, thetas []float64) error {
	l := len(next)
	if len(q) != l*c || len(t.P) != l {
		return fmt.Errorf("adapt: neural cache: %d values for %d positions of width %d, %d model terms", len(q), l, c, len(t.P))
	}
	if pool != nil && pool.Len() > 0 && pool.C != c {
		return fmt.Errorf("adapt: neural cache: pool keys of width %d for queries of width %d", pool.C, c)
	}
	gram := func(keys []float32, n int) []float32 {
		out := make([]float32, l*n)
		if l > 0 && n > 0 {
			blas32.Gemm(blas.NoTrans, blas.Trans, 1, blas32.General{Rows: l, Cols: c, Stride: c, Data: q},
				blas32.General{Rows: n, Cols: c, Stride: c, Data: keys}, 0, blas32.General{Rows: l, Cols: n, Stride: n, Data: out})
		}
		return out
	}
	own := gram(q, l)
	np := 0
	var pg []float32
	if pool != nil {
		np = pool.Len()
		pg = gram(pool.K, np)
	}
	t.NOwn, t.NPool = make([][]float64, len(thetas)), make([][]float64, len(thetas))
	for ti, th := range thetas {
		t.NOwn[ti], t.NPool[ti] = make([]float64, l), make([]float64, l)
		for j := range l {
			t.NOwn[ti][j] = keyProb(own[j*l:j*l+j], next[:j], next[j], th, t.P[j])
			t.NPool[ti][j] = t.P[j]
			if np > 0 {
				t.NPool[ti][j] = keyProb(pg[j*np:(j+1)*np], pool.V, next[j], th, t.P[j])
			}
		}
	}
	return nil
}

// keyProb is q_n(y) over keys with similarities sim and values v (none:
// fallback).
func keyProb(sim []float32, v []int32, y int32, theta, fallback float64) float64 {
	if len(sim) == 0 {
		return fallback
	}
	var num, den float64
	for k, s := range sim {
		e := math.Exp(theta * (float64(s) - 1))
		den += e
		if v[k] == y {
			num += e
		}
	}
	return num / den
}

// MixLoss is the summed loss (nats) of positions [from, to) under w.
func (w CacheWeights) MixLoss(t *MixTerms, from, to int) float64 {
	ti := w.thetaIndex(len(t.NOwn))
	s := 0.0
	for j := from; j < to; j++ {
		p := (1-w.Own-w.Pool-w.NeuralOwn-w.NeuralPool)*t.P[j] + w.Own*t.UOwn[j] + w.Pool*t.UPool[j]
		if ti >= 0 {
			p += w.NeuralOwn*t.NOwn[ti][j] + w.NeuralPool*t.NPool[ti][j]
		}
		s -= math.Log(p)
	}
	return s
}

// thetaIndex is the index of w's theta among DefaultThetas-like rows (n
// of them), -1 when w has no neural weight.
func (w CacheWeights) thetaIndex(n int) int {
	if w.NeuralOwn == 0 && w.NeuralPool == 0 {
		return -1
	}
	if w.ThetaIndex < 0 || w.ThetaIndex >= n {
		panic(fmt.Sprintf("adapt: neural cache: theta index %d of %d", w.ThetaIndex, n))
	}
	return w.ThetaIndex
}

// MixChoice says which of the mixture's components a choice may use.
type MixChoice struct{ Own, Pool, NeuralOwn, NeuralPool bool }

// ChooseMixWeights picks the weights (and theta) with the lowest summed
// loss over every member's prompt positions [0, n) (terms built with the
// member left out of every pool), trying each weight of cfg.Grid for each
// allowed component, the total at most cfg.MaxTotal; ties go to the
// smaller weights and the earlier theta. The candidates' losses are summed
// on GOMAXPROCS goroutines, each exactly as alone (member by member, in
// order), and compared in candidate order: the choice does not depend on
// the parallelism.
func ChooseMixWeights(members []*MixTerms, allow MixChoice, cfg CacheConfig, thetas []float64) CacheWeights {
	cands := mixCandidates(allow, cfg, thetas)
	loss := make([]float64, len(cands))
	workers := min(runtime.GOMAXPROCS(0), len(cands))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(cands); i += workers {
				sum := 0.0
				for _, m := range members {
					sum += cands[i].MixLoss(m, 0, len(m.P))
				}
				loss[i] = sum
			}
		}()
	}
	wg.Wait()
	best, bestLoss := CacheWeights{}, math.Inf(1)
	for i, w := range cands {
		if loss[i] < bestLoss {
			best, bestLoss = w, loss[i]
		}
	}
	return best
}

// mixCandidates lists ChooseMixWeights' candidates in its tie-breaking
// order: theta, then the own, pool, neural own and neural pool weights in
// grid order.
func mixCandidates(allow MixChoice, cfg CacheConfig, thetas []float64) []CacheWeights {
	grid := func(ok bool) []float64 {
		if ok {
			return cfg.Grid
		}
		return []float64{0}
	}
	nth := 1
	if allow.NeuralOwn || allow.NeuralPool {
		nth = len(thetas)
	}
	var out []CacheWeights
	for ti := range nth {
		for _, a := range grid(allow.Own) {
			for _, b := range grid(allow.Pool) {
				for _, c := range grid(allow.NeuralOwn) {
					for _, d := range grid(allow.NeuralPool) {
						if a+b+c+d > cfg.MaxTotal {
							continue
						}
						w := CacheWeights{Own: a, Pool: b, NeuralOwn: c, NeuralPool: d, ThetaIndex: ti}
						if c > 0 || d > 0 {
							w.Theta = thetas[ti]
						} else if ti > 0 {
							continue // the same mixture as theta 0's
						}
						out = append(out, w)
					}
				}
			}
		}
	}
	return out
}

// TokenTerms fills t's model and token-cache rows for a sequence toks
// whose positions j in [0, len(lp)) have the model's losses lp[j] (of
// toks[j+1]): own counts toks[0..j], pool counts pool's (nil or empty:
// none, P in its place).
func TokenTerms(t *MixTerms, toks []int32, lp []float32, pool *TokenCounts, cfg CacheConfig) error {
	l := len(lp)
	if len(toks) < l+1 {
		return fmt.Errorf("adapt: cache: %d tokens for %d losses", len(toks), l)
	}
	t.P, t.UOwn, t.UPool = make([]float64, l), make([]float64, l), make([]float64, l)
	var own TokenCounts
	for j := range l {
		own.Add(toks[j])
		y := toks[j+1]
		t.P[j] = math.Exp(-float64(lp[j]))
		t.UOwn[j] = own.Prob(y, cfg)
		t.UPool[j] = t.P[j]
		if pool != nil && pool.Total > 0 {
			t.UPool[j] = pool.Prob(y, cfg)
		}
	}
	return nil
}

// PoolPrompt is a prompt lent to a pool: its tokens (the token cache
// counts them all) and the unit hidden states of its first
// len(Hidden)/C positions (the neural cache's keys, whose values are the
// tokens that followed).
type PoolPrompt struct {
	Tokens []int32
	Hidden []float32
}

// PoolTerms builds a sequence's terms over its positions [0, l): toks, its
// losses lp and unit hidden states hid (l rows of width c) with others as
// its pools. keep, if set, says which keys (others[m]'s position k) the
// neural pool takes.
func PoolTerms(toks []int32, lp, hid []float32, l, c int, others []PoolPrompt, keep func(m, k int) bool, cfg CacheConfig,
	thetas []float64) (*MixTerms, error) {
	if len(lp) < l || len(hid) < l*c || len(toks) < l+1 {
		return nil, fmt.Errorf("adapt: cache: %d positions of %d tokens, %d losses and %d hidden values of width %d", l, len(toks), len(lp), len(hid), c)
	}
	var pool TokenCounts
	keys := &NeuralKeys{C: c}
	for m, o := range others {
		pool.Add(o.Tokens...)
		for k := range len(o.Hidden) / c {
			if keep == nil || keep(m, k) {
				if err := keys.Add(o.Hidden[k*c:(k+1)*c], o.Tokens[k+1:k+2]); err != nil {
					return nil, err
				}
			}
		}
	}
	t := &MixTerms{}
	if err := TokenTerms(t, toks, lp[:l], &pool, cfg); err != nil {
		return nil, err
	}
	return t, NeuralTerms(t, hid[:l*c], toks[1:l+1], keys, c, thetas)
}
