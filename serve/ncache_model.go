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
	return b.M.ForwardAdapted(c, tokens, true, hiddenCopy{dst: hidden, b: b.M.B})
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

// hiddenCopy is a model.Adapter that copies each forward's final hidden
// states (head rows, C) into dst and leaves the rest to inner's pass (nil:
// the base model).
type hiddenCopy struct {
	inner model.Adapter
	dst   gpu.Tensor
	b     gpu.Backend
}

// Observe implements model.TokenObserver for an inner adapter that is one.
func (h hiddenCopy) Observe(tokens [][]int32) error {
	if o, ok := h.inner.(model.TokenObserver); ok {
		return o.Observe(tokens)
	}
	return nil
}

// Begin implements model.Adapter: the copy's row index goes up here,
// before the forward records a kernel.
func (h hiddenCopy) Begin(rows, head []int32) (model.Pass, error) {
	idx := make([]int32, len(head))
	for i := range idx {
		idx[i] = int32(i)
	}
	t, err := h.b.Alloc(gpu.I32, len(idx))
	if err != nil {
		return nil, err
	}
	if err := h.b.Write(t, idx); err != nil {
		h.b.Free(t)
		return nil, err
	}
	p := &copyPass{h: h, idx: t}
	if h.inner != nil {
		if p.inner, err = h.inner.Begin(rows, head); err != nil {
			h.b.Free(t)
			return nil, err
		}
	}
	return p, nil
}

type copyPass struct {
	h     hiddenCopy
	idx   gpu.Tensor
	inner model.Pass // nil: the base model
}

func (p *copyPass) Updates(s model.Site) bool { return p.inner != nil && p.inner.Updates(s) }

func (p *copyPass) Linear(s model.Site, y, x gpu.Tensor) error {
	if p.inner == nil {
		return nil
	}
	return p.inner.Linear(s, y, x)
}

// MatMul keeps the inner pass's fused site matmuls.
func (p *copyPass) MatMul(s model.Site, y, x, w, bias gpu.Tensor) (bool, error) {
	if mp, ok := p.inner.(model.MatMulPass); ok {
		return mp.MatMul(s, y, x, w, bias)
	}
	return false, nil
}

// Logits copies h, then leaves the logits to the inner pass or the model.
func (p *copyPass) Logits(dst, h gpu.Tensor) (bool, error) {
	p.h.b.Rows(p.h.dst, h, p.idx)
	if p.inner == nil {
		return false, nil
	}
	return p.inner.Logits(dst, h)
}

func (p *copyPass) End() {
	if p.inner != nil {
		p.inner.End()
	}
	p.h.b.Free(p.idx)
}
