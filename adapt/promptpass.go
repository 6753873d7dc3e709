package adapt

import (
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// promptPass is what one forward of the base model over a plan's
// sequences gives a self-checked plan: each sequence's mean final hidden
// state (the FeatureHidden feature, normalised as HiddenMeans does), its
// summed next-token loss under the base model, and, for an adapter without
// block sites, its final hidden rows, from which the self-check scores the
// update with the head alone. Without it a self-checked plan runs the base
// model over its sequences three times: features, base loss, adapted loss.
type promptPass struct {
	hidden []float32   // (N, C)
	base   []float64   // per sequence: summed loss of tokens 1..len-1 (sequences of 2+ tokens)
	losses [][]float32 // per sequence: the losses base sums, per position (nil: fewer than 2 tokens)
	rows   [][]float32 // per sequence (len, C); nil unless kept
	// dev, in place of rows, holds them on the device: sequence i's row t
	// is row i*devT + t of dev (B*devT, C) (a prefill's final layer norm,
	// planFromResidual), which the self-check gathers there.
	dev  gpu.Tensor
	devT int
}

// devRows is pp's device rows (nil: none, or pp nil).
func (pp *promptPass) devRows() gpu.Tensor {
	if pp == nil {
		return nil
	}
	return pp.dev
}

// sharedPass says whether basePass serves a self-check of seqs: the
// features include hidden states and no sequence is longer than the
// context (HiddenMeans refuses those).
func (r *Runtime) sharedPass(seqs [][]int32) bool {
	if r.noSharedPass || (r.Meta.Features != FeatureHidden && r.Meta.Features != FeatureBoth) {
		return false
	}
	for _, s := range seqs {
		if len(s) > r.M.Cfg.NCtx {
			return false
		}
	}
	return true
}

// basePass runs the base model once over seqs (as Model.ScoreChunked
// batches them), keeping what promptPass holds; keepRows keeps the final
// hidden rows too. Sequences of fewer than 2 tokens have nothing to score:
// their features come from HiddenMeans.
func (r *Runtime) basePass(seqs [][]int32, keepRows bool) (*promptPass, error) {
	m := r.M
	n, c := len(seqs), m.Cfg.NEmbd
	pp := &promptPass{hidden: make([]float32, n*c), base: make([]float64, n), losses: make([][]float32, n)}
	if keepRows {
		pp.rows = make([][]float32, n)
	}
	var scored, short []int
	var toks, shortToks [][]int32
	for i, s := range seqs {
		if len(s) >= 2 {
			scored, toks = append(scored, i), append(toks, s)
		} else {
			short, shortToks = append(short, i), append(shortToks, s)
		}
	}
	if len(toks) > 0 {
		sc, err := m.ScoreChunked(toks, func(first int) model.Adapter {
			return TapHidden(nil, func(h gpu.Tensor, seq []int32) error {
				hs, err := m.B.ReadF32(h)
				if err != nil {
					return err
				}
				for row, s := range seq {
					if s < 0 {
						continue
					}
					i := scored[first+int(s)]
					v := hs[row*c : (row+1)*c]
					dst := pp.hidden[i*c : (i+1)*c]
					for j, x := range v {
						dst[j] += x
					}
					if keepRows {
						pp.rows[i] = append(pp.rows[i], v...)
					}
				}
				return nil
			})
		})
		if err != nil {
			return nil, err
		}
		for k, i := range scored {
			pp.base[i], pp.losses[i] = sc[k].NLL, sc[k].Losses
		}
		if err := normaliseMeans(pp.hidden, c, scored, func(k int) int { return len(toks[k]) }); err != nil {
			return nil, err
		}
	}
	if len(short) > 0 {
		hm, err := HiddenMeans(m, shortToks)
		if err != nil {
			return nil, err
		}
		for k, i := range short {
			copy(pp.hidden[i*c:(i+1)*c], hm[k*c:(k+1)*c])
		}
	}
	return pp, nil
}

// HiddenTap is a model.Adapter that hands each forward's final hidden
// states (the ln_f output the head reads) on before the logits, and
// leaves everything else to Inner's pass (nil: the base model, so the
// forward and its scores stay the base model's). It forwards Observe to
// an Inner that is a model.TokenObserver.
type HiddenTap struct {
	Inner model.Adapter
	// Open runs in Begin with the forward's head rows (each row's
	// sequence), before the forward records a kernel, so uploads belong
	// there. It returns use, which gets the hidden states (head rows, C),
	// and done (nil: nothing), which runs at the pass's End.
	Open func(head []int32) (use func(h gpu.Tensor) error, done func(), err error)
}

// TapHidden is a HiddenTap that calls f with the hidden states and each
// row's sequence.
func TapHidden(inner model.Adapter, f func(h gpu.Tensor, head []int32) error) *HiddenTap {
	return &HiddenTap{Inner: inner, Open: func(head []int32) (func(gpu.Tensor) error, func(), error) {
		return func(h gpu.Tensor) error { return f(h, head) }, nil, nil
	}}
}

// Observe implements model.TokenObserver for an Inner that is one.
func (t *HiddenTap) Observe(tokens [][]int32) error {
	if o, ok := t.Inner.(model.TokenObserver); ok {
		return o.Observe(tokens)
	}
	return nil
}

// Begin implements model.Adapter.
func (t *HiddenTap) Begin(rows, head []int32) (model.Pass, error) {
	use, done, err := t.Open(head)
	if err != nil {
		return nil, err
	}
	p := &tapPass{use: use, done: done}
	if t.Inner != nil {
		if p.inner, err = t.Inner.Begin(rows, head); err != nil {
			if done != nil {
				done()
			}
			return nil, err
		}
	}
	return p, nil
}

type tapPass struct {
	use   func(h gpu.Tensor) error
	done  func()
	inner model.Pass // nil: the base model
}

func (p *tapPass) Updates(s model.Site) bool { return p.inner != nil && p.inner.Updates(s) }

func (p *tapPass) Linear(s model.Site, y, x gpu.Tensor) error {
	if p.inner == nil {
		return nil
	}
	return p.inner.Linear(s, y, x)
}

// MatMul keeps the inner pass's fused site matmuls.
func (p *tapPass) MatMul(s model.Site, y, x, w, bias gpu.Tensor) (bool, error) {
	if mp, ok := p.inner.(model.MatMulPass); ok {
		return mp.MatMul(s, y, x, w, bias)
	}
	return false, nil
}

func (p *tapPass) Logits(dst, h gpu.Tensor) (bool, error) {
	if err := p.use(h); err != nil || p.inner == nil {
		return false, err
	}
	return p.inner.Logits(dst, h)
}

func (p *tapPass) End() {
	if p.inner != nil {
		p.inner.End()
	}
	if p.done != nil {
		p.done()
	}
}

// checkPass is the shared base pass of a plan that will self-check seqs
// (nil when it will not, or when sharedPass declines them).
func (r *Runtime) checkPass(seqs [][]int32, checks bool) (*promptPass, error) {
	if !checks || !r.Meta.SelfCheck || !r.sharedPass(seqs) {
		return nil, nil
	}
	return r.basePass(seqs, len(r.sites) == 0)
}

// hiddenMeans is the pass's hidden-state features (nil for no pass).
func (pp *promptPass) hiddenMeans() []float32 {
	if pp == nil {
		return nil
	}
	return pp.hidden
}

// DefaultCheckTokens is how many next-token predictions of a prompt, its
// last, the self-check scores at most (Runtime.CheckTokens 0). Scoring a
// prediction costs a projection onto the vocabulary, which is 18% of this
// project's default model's forward per token and 45% of GPT-2 124M's, so
// scoring every position of long prompts would cost the adaptation more
// than the 5% of a forward it may add. The benchmark's prompts are 64
// tokens (63 predictions), so its figures score every one.
const DefaultCheckTokens = 64

// checkTokens is the number of predictions the self-check scores at most
// (0: all).
func (r *Runtime) checkTokens() int {
	switch {
	case r.CheckTokens < 0:
		return 0
	case r.CheckTokens == 0:
		return DefaultCheckTokens
	}
	return r.CheckTokens
}

// decided is each sequence's per-position losses under the self-check's
// decision, as far as the shared pass knows them: kept[i] for a sequence
// that keeps its update, nil for one whose update was scored on part of
// it only (partial[i]), the base model's losses for the others (nil for
// fewer than 2 tokens). It is nil without a pass.
func (pp *promptPass) decided(kept map[int][]float32, partial map[int]bool) [][]float32 {
	if pp == nil {
		return nil
	}
	out := make([][]float32, len(pp.losses))
	for i, l := range pp.losses {
		out[i] = l
		if k, ok := kept[i]; ok {
			out[i] = k
		}
		if partial[i] {
			out[i] = nil
		}
	}
	return out
}
