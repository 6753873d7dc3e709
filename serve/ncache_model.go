package serve

import (
	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// The model's half of the neural cache (Options.CacheNeural; ncache.go
// has the scheduler's): the prompts' hidden states for the memory, and
// each step's for the queries.

// NeuralModel is a CacheModel that also gives the final hidden states (the
// ln_f output the head reads): what Options.CacheNeural asks of a Model.
// Base and Adaptive implement it.
type NeuralModel interface {
	CacheModel
	// PromptHidden returns per prompt what PromptLosses does and its unit
	// final hidden states at positions 0 .. len-2 ((len - 1) x NEmbd
	// values, adapt.ScoreHidden's), with adaptation ad[i].
	PromptHidden(prompts [][]int32, ad []Adapter) (lp, hid [][]float32, err error)
	// ForwardLastHidden is ForwardLast that also copies into hidden (B,
	// NEmbd) each slot's final hidden state of its last new token (the row
	// of a slot without tokens is undefined).
	ForwardLastHidden(c *model.Cache, tokens [][]int32, ad []Adapter, hidden gpu.Tensor) (gpu.Tensor, error)
}

// PromptHidden implements NeuralModel: the base model's.
func (b Base) PromptHidden(prompts [][]int32, _ []Adapter) ([][]float32, [][]float32, error) {
	return promptHidden(b.M, prompts, func([]int) model.Adapter { return nil })
}

// ForwardLastHidden implements NeuralModel. The logits are the base
// model's, computed apart from the final layer norm (a pass turns the
// fused head off): equal to ForwardLast's to rounding.
func (b Base) ForwardLastHidden(c *model.Cache, tokens [][]int32, _ []Adapter, hidden gpu.Tensor) (gpu.Tensor, error) {
	return b.M.ForwardAdapted(c, tokens, true, copyHidden(nil, hidden, b.M.B))
}

// promptHidden is promptLosses with the prompts' unit hidden states (none
// for a prompt of one token).
func promptHidden(m *model.Model, prompts [][]int32, head func(index []int) model.Adapter) ([][]float32, [][]float32, error) {
	lp, hid := make([][]float32, len(prompts)), make([][]float32, len(prompts))
	var idx []int
	var seqs [][]int32
	for i, p := range prompts {
		lp[i], hid[i] = []float32{}, []float32{}
		if len(p) >= 2 {
			idx, seqs = append(idx, i), append(seqs, p)
		}
	}
	if len(seqs) == 0 {
		return lp, hid, nil
	}
	sc, h, err := adapt.ScoreHidden(m, seqs, head(idx))
	if err != nil {
		return nil, nil, err
	}
	for j, i := range idx {
		lp[i], hid[i] = sc[j].Losses, h[j]
	}
	return lp, hid, nil
}

// copyHidden is a model.Adapter that copies each forward's final hidden
// states (head rows, C) into the first rows of dst and leaves the rest to
// inner's pass (nil: the base model). The copy's row index goes up before
// the forward records a kernel.
func copyHidden(inner model.Adapter, dst gpu.Tensor, b gpu.Backend) *adapt.HiddenTap {
	return &adapt.HiddenTap{Inner: inner, Open: func(head []int32) (func(gpu.Tensor) error, func(), error) {
		ids := make([]int32, len(head))
		for i := range ids {
			ids[i] = int32(i)
		}
		idx, err := b.Alloc(gpu.I32, len(ids))
		if err != nil {
			return nil, nil, err
		}
		if err := b.Write(idx, ids); err != nil {
			b.Free(idx)
			return nil, nil, err
		}
		use := func(h gpu.Tensor) error { b.Rows(dst, h, idx); return nil }
		return use, func() { b.Free(idx) }, nil
	}}
}
