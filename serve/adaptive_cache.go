package serve

import (
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Adaptive's half of the token cache memory (CacheModel).

// PromptLosses implements CacheModel: each prompt's losses through its
// own cluster's updates (the base model where ad[i] is off or has none),
// with the serving plan's factors; the plan's slot clusters are restored
// before it returns.
func (a *Adaptive) PromptLosses(prompts [][]int32, ad []Adapter) ([][]float32, error) {
	known := a.grouped
	a.grouped = nil // one admission's: the prompts' slices may be reused later
	out := make([][]float32, len(prompts))
	var rest []int
	for i, p := range prompts {
		if g, ok := a.known(known, p, ad[i]); ok {
			out[i] = g.losses
			continue
		}
		rest = append(rest, i)
	}
	if len(rest) == 0 {
		return out, nil
	}
	sub := make([][]int32, len(rest))
	subAd := make([]Adapter, len(rest))
	for j, i := range rest {
		sub[j], subAd[j] = prompts[i], ad[i]
	}
	lp, err := a.scorePrompts(sub, subAd)
	if err != nil {
		return nil, err
	}
	for j, i := range rest {
		out[i] = lp[j]
	}
	return out, nil
}

// scorePrompts is each prompt's per-position losses through its own
// cluster's update: one scoring forward.
func (a *Adaptive) scorePrompts(prompts [][]int32, ad []Adapter) ([][]float32, error) {
	var out [][]float32
	err := a.withClusters(prompts, ad, func(head func([]int) model.Adapter) (err error) {
		out, err = promptLosses(a.M, prompts, head)
		return err
	})
	return out, err
}

// PromptHidden implements NeuralModel: each prompt's losses and unit
// hidden states through its own cluster's update, taken from what the
// last online Group learned of them where it did (the same prompt, the
// same cluster), else from one scoring forward.
func (a *Adaptive) PromptHidden(prompts [][]int32, ad []Adapter) ([][]float32, [][]float32, error) {
	known := a.grouped
	a.grouped = nil // one admission's: the prompts' slices may be reused later
	lp, hid := make([][]float32, len(prompts)), make([][]float32, len(prompts))
	var rest []int
	for i, p := range prompts {
		if g, ok := a.known(known, p, ad[i]); ok && g.hid != nil {
			lp[i], hid[i] = g.losses, g.hid
			continue
		}
		rest = append(rest, i)
	}
	if len(rest) == 0 {
		return lp, hid, nil
	}
	sub := make([][]int32, len(rest))
	subAd := make([]Adapter, len(rest))
	for j, i := range rest {
		sub[j], subAd[j] = prompts[i], ad[i]
	}
	var slp, shid [][]float32
	err := a.withClusters(sub, subAd, func(head func([]int) model.Adapter) (err error) {
		slp, shid, err = promptHidden(a.M, sub, head)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for j, i := range rest {
		lp[i], hid[i] = slp[j], shid[j]
	}
	return lp, hid, nil
}

// known is what Group learned of prompt p under adaptation ad (ok false:
// nothing, or under another cluster).
func (a *Adaptive) known(known map[*int32]groupedLosses, p []int32, ad Adapter) (groupedLosses, bool) {
	cl := -1
	if ad.On {
		cl = ad.Cluster
	}
	if len(p) < 2 {
		return groupedLosses{}, false
	}
	g, ok := known[&p[0]]
	return g, ok && g.n == len(p) && g.cluster == cl
}

// ForwardLastHidden implements NeuralModel.
func (a *Adaptive) ForwardLastHidden(c *model.Cache, tokens [][]int32, ad []Adapter, hidden gpu.Tensor) (gpu.Tensor, error) {
	return a.forwardLast(c, tokens, ad, hidden)
}

// withClusters runs f with the plan's sequences set to the prompts'
// clusters (head(index) the adapter of prompts[index]); the plan's slot
// clusters are restored before it returns.
func (a *Adaptive) withClusters(prompts [][]int32, ad []Adapter, f func(head func(index []int) model.Adapter) error) error {
	saved := slices.Clone(a.plan.Cluster)
	defer func() {
		if err := a.plan.SetClusters(saved); err != nil {
			panic(err) // they were the plan's own
		}
	}()
	cl := make([]int, len(prompts))
	for i := range cl {
		cl[i] = -1
		if ad[i].On && ad[i].Cluster >= 0 {
			cl[i] = ad[i].Cluster
		}
	}
	if err := a.plan.SetClusters(cl); err != nil {
		return err
	}
	return f(func(index []int) model.Adapter { return a.plan.AdapterOf(index, nil) })
}

// MemoryKeys implements CacheModel. Online: an adapted prompt's pool is
// its training centroid's; one with adaptation off gets its nearest
// centroid unless the gate closes; a prompt the gate (or self-check) keeps
// at the base model is keyed by its feature (a run-time cluster). Window:
// every prompt by its feature (a window's k-means rows are no lasting
// identity). Static: the one global pool.
func (a *Adaptive) MemoryKeys(prompts [][]int32, ad []Adapter) ([]int, [][]float32, error) {
	n := len(prompts)
	trained, feats := make([]int, n), make([][]float32, n)
	var need []int
	for i := range trained {
		trained[i] = -1
		switch {
		case a.Mode == AdaptStatic:
		case a.Mode == AdaptOnline && ad[i].On && ad[i].Cluster >= 0:
			trained[i] = ad[i].Cluster
		default:
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return trained, feats, nil
	}
	seqs := make([][]int32, len(need))
	for j, i := range need {
		seqs[j] = prompts[i]
	}
	host, err := a.RT.HostFeatures(seqs)
	if err != nil {
		return nil, nil, err
	}
	var gate []float32 // a gate with features of its own reads these
	if a.Mode == AdaptOnline {
		if gate, err = a.RT.GateFeatures(seqs, host); err != nil {
			return nil, nil, err
		}
	}
	c := len(host) / len(need)
	for j, i := range need {
		f := host[j*c : (j+1)*c : (j+1)*c]
		if a.Mode == AdaptOnline && !ad[i].On {
			var gx []float32
			if gate != nil {
				gc := len(gate) / len(need)
				gx = gate[j*gc : (j+1)*gc]
			}
			if trained[i] = a.RT.NearestOpen(f, gx); trained[i] >= 0 {
				continue
			}
		}
		feats[i] = f
	}
	return trained, feats, nil
}

// MemoryRadius implements CacheModel: the gate's radius.
func (a *Adaptive) MemoryRadius() float64 {
	if a.Mode == AdaptStatic || a.RT.Gate == nil {
		return 0
	}
	return a.RT.Meta.MemoryRadius()
}

// MemoryCentroids is the number of training centroids whose pools the
// memory may hold (online mode; 0 otherwise): what MemoryBound counts.
func (a *Adaptive) MemoryCentroids() int {
	if a.Mode != AdaptOnline || a.RT.Centroids == nil {
		return 0
	}
	return a.RT.Centroids.K
}

var _ NeuralModel = (*Adaptive)(nil)
var _ NeuralModel = Base{}
