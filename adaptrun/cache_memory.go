package adaptrun

import (
	"fmt"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/adapt"
)

// replayMemory scores stream s the way `chameleon serve --cache` serves
// it: the windows arrive one by one in a random order (seeded by o.Seed),
// each is scored after its prompt with the snapshot of its pool in the
// server's cache memory (adapt.CacheMemory) taken at its admission, and
// then its prompt, with its per-position losses lps (the served model's),
// joins the memory. A window's pool is its training centroid's (s.Cluster)
// or, where the gate kept it at the base model, a run-time cluster found
// by leader clustering on its feature. No forward is run: the losses are
// ScoreServed's. It returns per-window scores (in s's order) and weights.
func replayMemory(s *Served, lps [][]float32, cfg adapt.CacheConfig, o CacheOpts) (Scores, []adapt.CacheWeights, error) {
	n, p := len(s.Tokens), s.Prompt
	out := Scores{Loss: make([]float64, n), N: make([]int, n)}
	ws := make([]adapt.CacheWeights, n)
	if s.Cluster != nil && len(s.Cluster) != n || s.Features != nil && len(s.Features) != n {
		return out, nil, fmt.Errorf("adaptrun: cache memory replay: %d windows, %d clusters, %d features", n, len(s.Cluster), len(s.Features))
	}
	mem, err := adapt.NewCacheMemory(cfg, o.Memory)
	if err != nil {
		return out, nil, err
	}
	for _, i := range rand.New(rand.NewPCG(o.Seed, 0x3e3)).Perm(n) {
		trained, feat := s.memoryKey(i)
		snap, err := mem.Admit(trained, feat, s.Tokens[i][:p], lps[i][:p-1])
		if err != nil {
			return out, nil, err
		}
		ws[i] = snap.Weights
		out.Loss[i], out.N[i] = snap.Weights.SequenceLoss(s.Tokens[i], lps[i], p-1, len(lps[i]), snap.Pool, cfg)
	}
	return out, ws, nil
}

// replayMemoryNeural is replayMemory with the neural cache in the memory
// (adapt.MemoryConfig.Width: the hidden states' width), the way `chameleon
// serve --cache` serves by default: each window is admitted with its
// prompt's unit hidden states hid (the served forward's) and scored after
// its prompt with the snapshot's counts, keys and weights, its own
// positions so far as own keys. Admission is sequential (each snapshot
// depends on the windows before it); the scoring of a run of admitted
// windows runs in parallel.
func replayMemoryNeural(s *Served, lps, hid [][]float32, cfg adapt.CacheConfig, o CacheOpts) (Scores, []adapt.CacheWeights, error) {
	n, p := len(s.Tokens), s.Prompt
	out := Scores{Loss: make([]float64, n), N: make([]int, n)}
	ws := make([]adapt.CacheWeights, n)
	if s.Cluster != nil && len(s.Cluster) != n || s.Features != nil && len(s.Features) != n || len(hid) != n {
		return out, nil, fmt.Errorf("adaptrun: neural cache memory replay: %d windows, %d clusters, %d features, %d hidden-state rows",
			n, len(s.Cluster), len(s.Features), len(hid))
	}
	if n == 0 {
		return out, ws, nil
	}
	c := len(hid[0]) / len(lps[0])
	thetas := adapt.DefaultThetas // the memory's (its weights' ThetaIndex counts in them)
	mc := o.Memory
	mc.Width = c
	mem, err := adapt.NewCacheMemory(cfg, mc)
	if err != nil {
		return out, nil, err
	}
	order := rand.New(rand.NewPCG(o.Seed, 0x3e3)).Perm(n)
	const run = 32 // windows admitted, then scored together
	snaps := make([]adapt.MemorySnapshot, run)
	for lo := 0; lo < n; lo += run {
		idx := order[lo:min(lo+run, n)]
		for k, i := range idx {
			trained, feat := s.memoryKey(i)
			if snaps[k], err = mem.AdmitHidden(trained, feat, s.Tokens[i][:p], lps[i][:p-1], hid[i][:(p-1)*c]); err != nil {
				return out, nil, err
			}
		}
		err := forEach(len(idx), func(k int) error {
			i, snap := idx[k], snaps[k]
			t := &adapt.MixTerms{}
			l := len(lps[i])
			if err := adapt.TokenTerms(t, s.Tokens[i], lps[i], snap.Pool, cfg); err != nil {
				return err
			}
			if err := adapt.NeuralTerms(t, hid[i][:l*c], s.Tokens[i][1:l+1], snap.Keys, c, thetas); err != nil {
				return err
			}
			ws[i] = snap.Weights
			out.Loss[i], out.N[i] = snap.Weights.MixLoss(t, p-1, l), l-(p-1)
			return nil
		})
		if err != nil {
			return out, nil, err
		}
	}
	return out, ws, nil
}

// memoryKey is window i's key in the served memory: its training centroid
// (-1: none, the gate kept it) and its feature (nil: none).
func (s *Served) memoryKey(i int) (int, []float32) {
	trained := -1
	if s.Cluster != nil {
		trained = s.Cluster[i]
	}
	var feat []float32
	if s.Features != nil {
		feat = s.Features[i]
	}
	return trained, feat
}
