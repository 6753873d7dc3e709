package serve

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Adapter is one sequence's adaptation: whether its logits are adapted,
// and with which of the model's clusters. In a Task only On counts; the
// scheduler sets Cluster at admission from Model.Group. The base model
// ignores it.
type Adapter struct {
	On      bool // adapt this sequence's logits
	Cluster int  // its cluster id (Model.Group's); -1: not assigned (base logits); ClusterPending: its prefill decides it
}

// Model is what the scheduler needs of a model. It is an interface so that
// tests can inject failures (a lost device) and so that the adapted model
// can replace the base one. Only the scheduler goroutine calls it.
type Model interface {
	// Config is the model's architecture (VocabSize, NCtx, ...).
	Config() model.Config
	// Backend runs sampling and log-softmax on the logits ForwardLast returns.
	Backend() gpu.Backend
	// NewCache allocates a KV cache of slots sequences x tmax tokens.
	NewCache(slots, tmax int) (*model.Cache, error)
	// FreeCache releases a cache.
	FreeCache(c *model.Cache)
	// ForwardLast appends tokens[b] to slot b (ragged, possibly none) and
	// returns the logits of each slot's last new token, shape (B, V); the
	// caller frees them. adapt[b] is slot b's adaptation (len(adapt) == B).
	ForwardLast(c *model.Cache, tokens [][]int32, adapt []Adapter) (gpu.Tensor, error)
	// Adapts reports whether ForwardLast honours Adapter.On.
	Adapts() bool
	// Group gives clusters to the sequences just admitted with adaptation
	// on (one call per admission round: the window): prompts are their
	// prompts, live the clusters of the adapted sequences still running
	// (whose factors must stay as they are). It returns one cluster per
	// prompt, for Adapter.Cluster.
	Group(prompts [][]int32, live []int) ([]int, error)
}

// Base serves a model without adaptation.
type Base struct{ M *model.Model }

func (b Base) Config() model.Config { return b.M.Cfg }
func (b Base) Backend() gpu.Backend { return b.M.B }
func (b Base) NewCache(slots, tmax int) (*model.Cache, error) {
	return b.M.NewCache(slots, tmax)
}
func (b Base) FreeCache(c *model.Cache) { b.M.FreeCache(c) }
func (b Base) ForwardLast(c *model.Cache, tokens [][]int32, _ []Adapter) (gpu.Tensor, error) {
	return b.M.ForwardLast(c, tokens)
}
func (b Base) Adapts() bool { return false }
func (b Base) Group([][]int32, []int) ([]int, error) {
	return nil, fmt.Errorf("serve: the base model does not adapt")
}

// PromptLosses implements CacheModel: the base model's losses.
func (b Base) PromptLosses(prompts [][]int32, _ []Adapter) ([][]float32, error) {
	return promptLosses(b.M, prompts, func([]int) model.Adapter { return nil })
}

// MemoryKeys implements CacheModel: without an adapter every prompt goes
// to the memory's one global pool.
func (b Base) MemoryKeys(prompts [][]int32, _ []Adapter) ([]int, [][]float32, error) {
	trained := make([]int, len(prompts))
	for i := range trained {
		trained[i] = -1
	}
	return trained, make([][]float32, len(prompts)), nil
}

// MemoryRadius implements CacheModel (no run-time clusters).
func (b Base) MemoryRadius() float64 { return 0 }

// promptLosses scores the prompts of two tokens or more with m through
// the adapter head(index) gives for them (index: their positions in
// prompts); shorter prompts get no losses.
func promptLosses(m *model.Model, prompts [][]int32, head func(index []int) model.Adapter) ([][]float32, error) {
	out := make([][]float32, len(prompts))
	var idx []int
	var seqs [][]int32
	for i, p := range prompts {
		out[i] = []float32{}
		if len(p) >= 2 {
			idx, seqs = append(idx, i), append(seqs, p)
		}
	}
	if len(seqs) == 0 {
		return out, nil
	}
	sc, err := m.Score(seqs, nil, head(idx))
	if err != nil {
		return nil, err
	}
	for j, i := range idx {
		out[i] = sc[j].Losses
	}
	return out, nil
}
