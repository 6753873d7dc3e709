package adaptrun

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/chameleon-llm/chameleon/adapt"
)

// The neural cache's evaluation (adapt/ncache.go): the token cache's
// streams and groups (cache.go), each window's terms built from the
// served forward's hidden states (ScoreServedHidden). A cluster chooses
// its four weights and theta on its members' prompts, each member left
// out of both pools; a window is then scored with its own positions and
// the other members' prompts (never its own) as keys and counts.

// scoreNeural scores stream s under a neural variant of v.
func scoreNeural(s *Served, v cacheVariant, cfg adapt.CacheConfig, o CacheOpts) (Scores, []adapt.CacheWeights, error) {
	lps, hid := s.BaseTok, s.BaseHidden
	if v.adapted {
		lps, hid = s.AdaptedTok, s.AdaptedHidden
	}
	n, p := len(s.Tokens), s.Prompt
	if len(hid) != n {
		return Scores{}, nil, fmt.Errorf("adaptrun: neural cache: %d of %d windows have hidden states (ScoreServedHidden)", len(hid), n)
	}
	if v.groups == "memory" {
		mo := o
		mo.Memory.WithSelf = v.withSelf
		return replayMemoryNeural(s, lps, hid, cfg, mo)
	}
	thetas := o.Thetas
	if len(thetas) == 0 {
		thetas = adapt.DefaultThetas
	}
	groups, borrow, err := cacheGroups(s, v.groups, o)
	if err != nil {
		return Scores{}, nil, err
	}
	allow := adapt.MixChoice{Own: true, Pool: v.pool, NeuralOwn: true, NeuralPool: v.pool}
	weights := make([]adapt.CacheWeights, len(groups))
	err = forEach(len(groups), func(gi int) error {
		g := groups[gi]
		members := make([]*adapt.MixTerms, len(g))
		for k, i := range g {
			var others []int
			if v.pool {
				others = g
			}
			var err error
			if members[k], err = neuralTerms(s, lps, hid, i, others, p-1, cfg, thetas); err != nil {
				return err
			}
		}
		weights[gi] = adapt.ChooseMixWeights(members, allow, cfg, thetas)
		return nil
	})
	if err != nil {
		return Scores{}, nil, err
	}
	out := Scores{Loss: make([]float64, n), N: make([]int, n)}
	ws := make([]adapt.CacheWeights, n)
	err = forEach(len(groups), func(gi int) error {
		src := gi
		if borrow != nil {
			src = borrow[gi]
		}
		for _, i := range groups[gi] {
			var others []int
			if v.pool {
				for _, j := range groups[src] {
					if !v.noNeighbours || !mayNeighbour(s.Tokens[i], s.Tokens[j]) {
						others = append(others, j)
					}
				}
			}
			var drop func(j, k int) bool
			if v.noVerbatim {
				drop = verbatimIn(s.Tokens[i], s.Tokens)
			}
			t, err := neuralTermsExcept(s, lps, hid, i, others, len(lps[i]), cfg, thetas, drop)
			if err != nil {
				return err
			}
			ws[i] = weights[src]
			out.Loss[i], out.N[i] = ws[i].MixLoss(t, p-1, len(lps[i])), len(lps[i])-(p-1)
		}
		return nil
	})
	return out, ws, err
}

// forEach runs f(0..n-1) on as many goroutines as there are CPUs and
// returns the first error.
func forEach(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// neuralTerms are window i's terms over its positions [0, l): own counts
// and keys its own, the pools the prompts of others (i itself skipped).
func neuralTerms(s *Served, lps, hid [][]float32, i int, others []int, l int, cfg adapt.CacheConfig, thetas []float64) (*adapt.MixTerms, error) {
	return neuralTermsExcept(s, lps, hid, i, others, l, cfg, thetas, nil)
}

// neuralTermsExcept is neuralTerms without the pool keys drop(j, k)
// rejects (window j's position k; nil: none).
func neuralTermsExcept(s *Served, lps, hid [][]float32, i int, others []int, l int, cfg adapt.CacheConfig, thetas []float64,
	drop func(j, k int) bool) (*adapt.MixTerms, error) {
	p := s.Prompt
	c := len(hid[i]) / len(lps[i])
	var lent []adapt.PoolPrompt
	var from []int // lent[m] is window from[m]'s prompt
	for _, j := range others {
		if j != i {
			lent, from = append(lent, adapt.PoolPrompt{Tokens: s.Tokens[j][:p], Hidden: hid[j][:(p-1)*c]}), append(from, j)
		}
	}
	var keep func(m, k int) bool
	if drop != nil {
		keep = func(m, k int) bool { return !drop(from[m], k) }
	}
	return adapt.PoolTerms(s.Tokens[i], lps[i], hid[i], l, c, lent, keep, cfg, thetas)
}

// mayNeighbour says whether windows a and b may be neighbours in their
// document (one's first token is the other's last: windows are
// consecutive cuts of a domain's stream, so a true neighbour always
// matches, and a few others do by chance).
func mayNeighbour(a, b []int32) bool {
	return b[0] == a[len(a)-1] || a[0] == b[len(b)-1]
}

// verbatimSpan is the length of the token spans the no-verbatim control
// matches: a key whose span (its position's verbatimSpan-1 tokens up to
// it and its value) occurs anywhere in the scored window is dropped.
const verbatimSpan = 8

// verbatimIn returns the control's filter for window a: pool key (j, k)
// is dropped when toks[j][k+2-verbatimSpan .. k+1] occurs in a.
func verbatimIn(a []int32, toks [][]int32) func(j, k int) bool {
	spans := map[string]bool{}
	key := func(x []int32) string {
		b := make([]byte, 0, 4*len(x))
		for _, t := range x {
			b = append(b, byte(t), byte(t>>8), byte(t>>16), byte(t>>24))
		}
		return string(b)
	}
	for e := verbatimSpan; e <= len(a); e++ {
		spans[key(a[e-verbatimSpan:e])] = true
	}
	return func(j, k int) bool {
		e := k + 2
		return e >= verbatimSpan && spans[key(toks[j][e-verbatimSpan:e])]
	}
}
