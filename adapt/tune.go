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
// remakes the factors (p.gated) from the tuned gates.
func (p *Plan) tuneGates(seqs [][]int32, rows [][]float32, o Tune) error {
	if o.Steps == 0 {
		return nil
	}
	tr, err := p.tuneRowsOf(seqs, rows)
	if err != nil || tr.targets == 0 {
		return err
	}
	be := p.rt.M.B
	g, err := be.ReadF32(p.packed)
	if err != nil {
		return err
	}
	var opt Adam
	for range o.Steps {
		grad, err := p.gateGrad(tr)
		if err != nil {
			return err
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

// gateGrad is the gradient of tr's mean next-token loss under the plan's
// factors with respect to its gates (K, R), in batches whose logits stay
// under 64 MiB.
func (p *Plan) gateGrad(tr tuneRows) ([]float32, error) {
	m := p.rt.M
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	maxRows := max(1, (64<<20)/(4*v))
	var sum []float32
	for a := 0; a < len(tr.tg); a += maxRows {
		b := min(a+maxRows, len(tr.tg))
		g, err := p.gateGradRows(tr.h[a*c:b*c], tr.tg[a:b], tr.cl[a:b], float32(1/float64(tr.targets)))
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = g
			continue
		}
		for i, x := range g {
			sum[i] += x
		}
	}
	return sum, nil
}

// gateGradRows is the gates' gradient of scale times the summed loss of
// rows h (len(tg), C) with targets tg (-1: none) and clusters cl: the
// logits under the plan's factors, their cross-entropy gradient, B's
// transpose into the rank space and GateBackward's reduction per cluster,
// as the training path's basis backward does.
func (p *Plan) gateGradRows(h []float32, tg, cl []int32, scale float32) ([]float32, error) {
	m := p.rt.M
	be, ops := m.B, p.rt.ops
	n, c, v := len(tg), m.Cfg.NEmbd, m.Cfg.VocabSize
	pf := p.rt.basis.Factors()
	r := pf.R
	var live []gpu.Tensor
	defer func() {
		for _, t := range live {
			be.Free(t)
		}
	}()
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
		live = append(live, t)
		return t
	}
	hT, tgT, clT, cl0T := alloc(gpu.F32, n, c), alloc(gpu.I32, n), alloc(gpu.I32, n), alloc(gpu.I32, n)
	logits, dl := alloc(gpu.F32, n, v), alloc(gpu.F32, n, v)
	u, du, u0 := alloc(gpu.F32, n, r), alloc(gpu.F32, n, r), alloc(gpu.F32, n, r)
	dA, dB, dg := alloc(gpu.F32, 1, r, c), alloc(gpu.F32, 1, v, r), alloc(gpu.F32, p.packed.Shape()...)
	if err != nil {
		return nil, err
	}
	cl0 := make([]int32, n) // every row adapted: the pair's cluster 0
	for _, x := range []struct {
		t gpu.Tensor
		v any
	}{{hT, h}, {tgT, tg}, {clT, cl}, {cl0T, cl0}} {
		if err := be.Write(x.t, x.v); err != nil {
			return nil, err
		}
	}
	if err := ops.Logits(logits, hT, m.W.Head(), nil, p.factors, clT, p.Alpha); err != nil {
		return nil, err
	}
	tb, ok := be.(gpu.TrainBackend)
	if !ok {
		return nil, fmt.Errorf("adapt: tuning: the model's backend (%T) has no training ops", be)
	}
	tb.CrossEntropyBackward(dl, logits, tgT, scale)
	ops.LowRankU(u, hT, p.factors, clT, p.Alpha)
	if err := ops.LowRankBackwardInput(NewFactors(dA, dB), du, dl, hT, u, pf, cl0, p.Alpha); err != nil {
		return nil, err
	}
	ops.LowRankU(u0, hT, pf, cl0T, p.Alpha)
	if err := ops.GateBackward(dA, dg, du, u0, hT, p.packed, cl, p.Alpha); err != nil {
		return nil, err
	}
	return be.ReadF32(dg)
}
