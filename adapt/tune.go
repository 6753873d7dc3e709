package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Test-time tuning of a gated basis's gates (PlanOptions.Tune). A plan has
// run the base model over its sequences (the prompts) before it adapts
// anything, so their next-token losses are known for free. Tuning spends
// them: starting from the gates the hyper-network generated for each
// cluster, it takes Steps Adam steps on the gates alone (K x R numbers;
// the network and the pair stay fixed) against the mean loss of the
// adapted sequences' own tokens, and only then makes the factors the
// generation uses. The update is the head's alone, so the losses come
// from the base pass's final hidden rows without another forward.

// Tune is test-time training of a gated basis's gates: Steps Adam steps
// of rate LR (none when Steps is 0).
type Tune struct {
	Steps int     `json:"steps"`
	LR    float64 `json:"lr"`
}

// Check validates the settings.
func (t Tune) Check() error {
	if t.Steps < 0 || t.Steps > 1000 {
		return fmt.Errorf("tuning: %d steps: want 0 (none) to 1000", t.Steps)
	}
	if t.Steps > 0 && !(t.LR > 0 && t.LR <= 10) {
		return fmt.Errorf("tuning: rate %g: want a positive rate of at most 10", t.LR)
	}
	return nil
}

// Adam is the optimiser Tune runs on the gates (beta 0.9 and 0.999, eps
// 1e-8, bias-corrected), its state kept between steps.
type Adam struct {
	m1, m2 []float64
	t      int
}

// Step moves x against grad at rate lr.
func (a *Adam) Step(x, grad []float32, lr float64) {
	if a.m1 == nil {
		a.m1, a.m2 = make([]float64, len(x)), make([]float64, len(x))
	}
	a.t++
	c1, c2 := 1-math.Pow(0.9, float64(a.t)), 1-math.Pow(0.999, float64(a.t))
	for i, d := range grad {
		a.m1[i] = 0.9*a.m1[i] + 0.1*float64(d)
		a.m2[i] = 0.999*a.m2[i] + 0.001*float64(d)*float64(d)
		x[i] -= float32(lr * (a.m1[i] / c1) / (math.Sqrt(a.m2[i]/c2) + 1e-8))
	}
}

// tuneRows are the rows tuning scores: the adapted sequences' final hidden
// rows, each row's next token (-1 for a sequence's last) and cluster.
type tuneRows struct {
	h       []float32
	tg, cl  []int32
	targets int
}

// tuneRowsOf gathers the rows of the plan's adapted sequences (rows[i]
// are sequence i's final hidden rows, len(seqs[i]) x C).
func (p *Plan) tuneRowsOf(seqs [][]int32, rows [][]float32) (tuneRows, error) {
	var tr tuneRows
	c := p.rt.M.Cfg.NEmbd
	for i, s := range seqs {
		if p.Cluster[i] < 0 || len(s) < 2 {
			continue
		}
		if len(rows[i]) != len(s)*c {
			return tr, fmt.Errorf("adapt: tuning: sequence %d has %d hidden values for %d tokens", i, len(rows[i]), len(s))
		}
		tr.h = append(tr.h, rows[i]...)
		for t := range s {
			next := int32(-1)
			if t+1 < len(s) {
				next = s[t+1]
				tr.targets++
			}
			tr.tg, tr.cl = append(tr.tg, next), append(tr.cl, int32(p.Cluster[i]))
		}
	}
	return tr, nil
}

// tune tunes the plan's gates on seqs, with the final hidden rows of pp
// (the plan's shared base pass) or, without them, of a base pass of its
// own.
func (p *Plan) tune(seqs [][]int32, pp *promptPass, o Tune) error {
	if pp == nil || pp.rows == nil {
		var err error
		if pp, err = p.rt.basePass(seqs, true); err != nil {
			return err
		}
	}
	return p.tuneGates(seqs, pp.rows, o)
}

// tuneGates runs o's steps on the plan's gates (p.packed) against the
// mean loss of seqs' own next tokens, from their final hidden rows, and
// remakes the factors (p.gated) from the tuned gates. The rows go to the
// device once, in chunks whose logits stay under 64 MiB; each step only
// recomputes what the gates change.
func (p *Plan) tuneGates(seqs [][]int32, rows [][]float32, o Tune) error {
	if o.Steps == 0 {
		return nil
	}
	tr, err := p.tuneRowsOf(seqs, rows)
	if err != nil || tr.targets == 0 {
		return err
	}
	be := p.rt.M.B
	tb, ok := be.(gpu.TrainBackend)
	if !ok {
		return fmt.Errorf("adapt: tuning: the model's backend (%T) has no training ops", be)
	}
	g, err := be.ReadF32(p.packed)
	if err != nil {
		return err
	}
	c, v := p.rt.M.Cfg.NEmbd, p.rt.M.Cfg.VocabSize
	maxRows := max(1, (64<<20)/(4*v))
	var chunks []*gateChunk
	defer func() {
		for _, ch := range chunks {
			ch.free(be)
		}
	}()
	for a := 0; a < len(tr.tg); a += maxRows {
		b := min(a+maxRows, len(tr.tg))
		ch, err := p.newGateChunk(tr.h[a*c:b*c], tr.tg[a:b], tr.cl[a:b])
		if ch != nil {
			chunks = append(chunks, ch)
		}
		if err != nil {
			return err
		}
	}
	scale := float32(1 / float64(tr.targets))
	var opt Adam
	for range o.Steps {
		grad := make([]float32, len(g))
		for _, ch := range chunks {
			d, err := ch.grad(p, tb, scale)
			if err != nil {
				return err
			}
			for i, x := range d {
				grad[i] += x
			}
		}
		for i, d := range grad {
			if math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
				return fmt.Errorf("adapt: tuning: non-finite gradient for cluster %d's gates", i/max(1, len(grad)/p.K))
			}
		}
		opt.Step(g, grad, o.LR)
		if err := be.Write(p.packed, g); err != nil {
			return err
		}
		p.rt.ops.GateFactors(p.gated, p.rt.basis.A, p.packed)
	}
	return nil
}

// gateChunk is one chunk of tuning rows on the device: the hidden rows,
// targets and clusters (uploaded once), the ungated u0 = alpha A h (the
// same at every step) and the scratch each step's gradient writes.
type gateChunk struct {
	h, tg, cl, cl0, u0            gpu.Tensor
	logits, dl, u, du, dA, dB, dg gpu.Tensor
	clHost, cl0Host               []int32
	live                          []gpu.Tensor
}

// newGateChunk puts rows h (len(tg), C) with targets tg (-1: none) and
// clusters cl on the device. On an error the returned chunk (if any)
// holds what was allocated, for the caller to free.
func (p *Plan) newGateChunk(h []float32, tg, cl []int32) (*gateChunk, error) {
	m := p.rt.M
	be := m.B
	n, c, v := len(tg), m.Cfg.NEmbd, m.Cfg.VocabSize
	pf := p.rt.basis.Factors()
	r := pf.R
	ch := &gateChunk{clHost: cl, cl0Host: make([]int32, n)} // cl0: every row adapted, the pair's cluster 0
	var err error
	alloc := func(dt gpu.DType, shape ...int) gpu.Tensor {
		if err != nil {
			return nil
		}
		t, e := be.Alloc(dt, shape...)
		if e != nil {
			err = fmt.Errorf("adapt: tuning: %w", e)
			return nil
		}
		ch.live = append(ch.live, t)
		return t
	}
	ch.h, ch.tg, ch.cl, ch.cl0 = alloc(gpu.F32, n, c), alloc(gpu.I32, n), alloc(gpu.I32, n), alloc(gpu.I32, n)
	ch.logits, ch.dl = alloc(gpu.F32, n, v), alloc(gpu.F32, n, v)
	ch.u, ch.du, ch.u0 = alloc(gpu.F32, n, r), alloc(gpu.F32, n, r), alloc(gpu.F32, n, r)
	ch.dA, ch.dB, ch.dg = alloc(gpu.F32, 1, r, c), alloc(gpu.F32, 1, v, r), alloc(gpu.F32, p.packed.Shape()...)
	if err != nil {
		return ch, err
	}
	for _, x := range []struct {
		t gpu.Tensor
		v any
	}{{ch.h, h}, {ch.tg, tg}, {ch.cl, cl}, {ch.cl0, ch.cl0Host}} {
		if err := be.Write(x.t, x.v); err != nil {
			return ch, err
		}
	}
	p.rt.ops.LowRankU(ch.u0, ch.h, pf, ch.cl0, p.Alpha)
	return ch, nil
}

// grad is the gates' gradient of scale times the chunk's summed loss: the
// logits under the plan's factors, their cross-entropy gradient, B's
// transpose into the rank space and GateBackward's reduction per cluster,
// as the training path's basis backward does.
func (ch *gateChunk) grad(p *Plan, tb gpu.TrainBackend, scale float32) ([]float32, error) {
	ops := p.rt.ops
	pf := p.rt.basis.Factors()
	if err := ops.Logits(ch.logits, ch.h, p.rt.M.W.Head(), nil, p.factors, ch.cl, p.Alpha); err != nil {
		return nil, err
	}
	tb.CrossEntropyBackward(ch.dl, ch.logits, ch.tg, scale)
	ops.LowRankU(ch.u, ch.h, p.factors, ch.cl, p.Alpha)
	if err := ops.LowRankBackwardInput(NewFactors(ch.dA, ch.dB), ch.du, ch.dl, ch.h, ch.u, pf, ch.cl0Host, p.Alpha); err != nil {
		return nil, err
	}
	if err := ops.GateBackward(ch.dA, ch.dg, ch.du, ch.u0, ch.h, p.packed, ch.clHost, p.Alpha); err != nil {
		return nil, err
	}
	return p.rt.M.B.ReadF32(ch.dg)
}

// free releases the chunk's device tensors.
func (ch *gateChunk) free(be gpu.Backend) {
	for _, t := range ch.live {
		be.Free(t)
	}
}
