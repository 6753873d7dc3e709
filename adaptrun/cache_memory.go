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
		trained := -1
		if s.Cluster != nil {
			trained = s.Cluster[i]
		}
		var feat []float32
		if s.Features != nil {
			feat = s.Features[i]
		}
		snap, err := mem.Admit(trained, feat, s.Tokens[i][:p], lps[i][:p-1])
		if err != nil {
			return out, nil, err
		}
		ws[i] = snap.Weights
		out.Loss[i], out.N[i] = snap.Weights.SequenceLoss(s.Tokens[i], lps[i], p-1, len(lps[i]), snap.Pool, cfg)
	}
	return out, ws, nil
}
