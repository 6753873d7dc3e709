package model

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// PerplexityResult is the standard next-token perplexity of a token stream.
type PerplexityResult struct {
	Perplexity float64 `json:"perplexity"` // exp(NLL / Tokens)
	NLL        float64 `json:"nll"`        // summed negative log-likelihood, nats
	Tokens     int     `json:"tokens"`     // tokens scored: all but the first (and, when stride == context, each window's first)
	Windows    int     `json:"windows"`    // forward passes
	Context    int     `json:"context"`
	Stride     int     `json:"stride"`
}

// Perplexity scores tokens with a sliding window of ctx tokens moved by
// stride: each window scores only the targets the previous one did not,
// so every token after the first is scored once, with up to ctx-stride
// tokens of left context (the usual Hugging Face procedure). Windows run
// batch at a time through one forward, and the cross-entropy is computed
// on the backend, so only one float per position is read back.
// progress, if set, is called after each batch with windows done/total.
func (m *Model) Perplexity(tokens []int32, ctx, stride, batch int, progress func(done, total int)) (PerplexityResult, error) {
	if ctx <= 1 || ctx > m.Cfg.NCtx {
		return PerplexityResult{}, fmt.Errorf("model: perplexity context %d must be in [2, %d]", ctx, m.Cfg.NCtx)
	}
	if stride <= 0 || stride > ctx {
		return PerplexityResult{}, fmt.Errorf("model: stride %d must be in [1, context %d]", stride, ctx)
	}
	if len(tokens) < 2 {
		return PerplexityResult{}, fmt.Errorf("model: perplexity needs at least 2 tokens, got %d", len(tokens))
	}
	batch = max(batch, 1)
	// Window w covers tokens [begin, end); it scores targets end-newTargets..end-1.
	type window struct{ begin, end, scoreFrom int }
	var wins []window
	prevEnd := 1 // the first token is never a target
	for begin := 0; prevEnd < len(tokens); begin += stride {
		end := min(begin+ctx, len(tokens))
		// A window's first token has no context inside it: when windows
		// do not overlap (stride == ctx) it goes unscored, as in HF.
		wins = append(wins, window{begin, end, max(prevEnd, begin+1)})
		prevEnd = end
		if end == len(tokens) {
			break
		}
	}
	res := PerplexityResult{Context: ctx, Stride: stride, Windows: len(wins)}
	be := m.B
	for w0 := 0; w0 < len(wins); w0 += batch {
		ws := wins[w0:min(w0+batch, len(wins))]
		B := len(ws)
		cache, err := m.NewCache(B, ctx)
		if err != nil {
			return res, err
		}
		seqs := make([][]int32, B)
		tq := 0
		for i, w := range ws {
			seqs[i] = tokens[w.begin:w.end]
			tq = max(tq, w.end-w.begin)
		}
		targets := make([]int32, B*tq)
		for i := range targets {
			targets[i] = -1
		}
		for i, w := range ws {
			for p := w.scoreFrom; p < w.end; p++ {
				// Position p-1 of the window predicts token p.
				targets[i*tq+(p-1-w.begin)] = tokens[p]
			}
		}
		logits, err := m.Forward(cache, seqs)
		m.FreeCache(cache)
		if err != nil {
			return res, err
		}
		tg := gpu.Must(be.Alloc(gpu.I32, B*tq))
		loss := gpu.Must(be.Alloc(gpu.F32, B*tq))
		err = be.Write(tg, targets)
		var l []float32
		if err == nil {
			be.CrossEntropy(loss, logits, tg)
			l, err = be.ReadF32(loss)
		}
		be.Free(tg)
		be.Free(loss)
		be.Free(logits)
		if err != nil {
			return res, err
		}
		for i, t := range targets {
			if t >= 0 {
				if math.IsNaN(float64(l[i])) || math.IsInf(float64(l[i]), 0) {
					return res, fmt.Errorf("model: non-finite loss at window %d", w0+i/tq)
				}
				res.NLL += float64(l[i])
				res.Tokens++
			}
		}
		if progress != nil {
			progress(w0+B, len(wins))
		}
	}
	res.Perplexity = math.Exp(res.NLL / float64(res.Tokens))
	return res, nil
}
