package adapt

import (
	"fmt"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Prefill: a plan made from the prompts' own prefill. An adapter that
// updates the head alone leaves the decoder's hidden states and KV cache
// the base model's, so the generation's prefill of the prompts is also
// the base pass a plan needs (hidden-state features, the self-check's
// base losses, the rows tuning reads). Runtime.Plan runs that pass on its
// own and the generation then prefills the same prompts again: for a
// hidden-feature adapter, the adaptation cost a whole forward. A Prefill
// instead makes the plan inside the first forward, between the last block
// and the head, and that forward's logits are already the adapted ones.

// Prefill is a model.Adapter for generating from seqs (the prompts, as
// the first forward's sequences, from an empty cache): that forward makes
// the plan (Plan) from its own final hidden states and adapts its logits;
// later forwards use the plan's adapter. Where the prefill cannot make the
// plan (block sites, embedding-only features, a prompt over the context)
// the plan is made up front by Runtime.Plan.
type Prefill struct {
	rt   *Runtime
	seqs [][]int32
	o    PlanOptions
	plan *Plan
	err  error
	// lens is the prompts' lengths on the device, written before the
	// forward records anything (a write flushes recorded work, and one
	// inside the forward would wait for it): the plan's per-prompt sums.
	lens gpu.Tensor
	// PlanTime is the time the plan took: made up front, or inside the
	// first forward from its residual stream (the final layer norm of
	// every row, each prompt's sum of them read back, the self-check's
	// scoring, features, grouping, hyper-network and tuning; it includes
	// the wait for the forward recorded before it).
	PlanTime time.Duration
	// FromPrefill says that the first forward made the plan.
	FromPrefill bool
}

// Prefill returns the adapter that plans seqs under o during their
// prefill (or now, where it cannot). The caller frees it (Free).
func (r *Runtime) Prefill(seqs [][]int32, o PlanOptions) (*Prefill, error) {
	if err := r.checkPlan(len(seqs), o); err != nil {
		return nil, err
	}
	pf := &Prefill{rt: r, seqs: seqs, o: o}
	inPrefill := r.plansInPrefill(seqs)
	if inPrefill && o.Tune.Steps == 0 {
		var err error
		if pf.lens, err = r.lengths(seqs); err != nil {
			return nil, err
		}
	}
	if !inPrefill {
		t0 := time.Now()
		p, err := r.Plan(seqs, o)
		if err != nil {
			return nil, err
		}
		pf.plan, pf.PlanTime = p, time.Since(t0)
	}
	return pf, nil
}

// plansInPrefill says whether the prefill of seqs can make their plan: a
// hyper adapter of the head alone whose features include hidden states,
// every prompt non-empty and within the context.
func (r *Runtime) plansInPrefill(seqs [][]int32) bool {
	if r.Meta.Kind != KindHyper || len(r.sites) > 0 || (r.Meta.Features != FeatureHidden && r.Meta.Features != FeatureBoth) {
		return false
	}
	for _, s := range seqs {
		if len(s) == 0 || len(s) > r.M.Cfg.NCtx {
			return false
		}
	}
	return true
}

// InPrefill reports whether the first forward makes the plan.
func (pf *Prefill) InPrefill() bool { return pf.plan == nil && pf.err == nil }

// Plan is the plan: made up front, or by the first forward (nil before).
func (pf *Prefill) Plan() *Plan { return pf.plan }

// Free releases the plan.
func (pf *Prefill) Free() {
	pf.freeLens()
	if pf.plan != nil {
		pf.plan.Free()
		pf.plan = nil
	}
}

// Observe implements model.TokenObserver for a plan whose adapter is one
// (a plan made up front, with its token cache enabled).
func (pf *Prefill) Observe(tokens [][]int32) error {
	if pf.plan == nil {
		return nil
	}
	if o, ok := pf.plan.Adapter(nil).(model.TokenObserver); ok {
		return o.Observe(tokens)
	}
	return nil
}

// Begin implements model.Adapter.
func (pf *Prefill) Begin(rows, head []int32) (model.Pass, error) {
	switch {
	case pf.plan != nil:
		return pf.plan.Adapter(nil).Begin(rows, head)
	case pf.err != nil:
		return nil, pf.err
	}
	return LateHead{Choose: pf.planFrom}.Begin(rows, head)
}

// planFrom makes the plan from the first forward's residual stream x
// (rows: each row's sequence), the final layer norm of every prompt
// position on the host, and returns its adapter for that forward's head.
func (pf *Prefill) planFrom(x gpu.Tensor, rows []int32) (model.Adapter, error) {
	t0 := time.Now()
	plan, err := pf.rt.planFromResidual(pf.seqs, pf.o, x, rows, pf.lens)
	pf.freeLens()
	pf.PlanTime = time.Since(t0)
	if err != nil {
		pf.err = fmt.Errorf("adapt: plan from the prefill: %w", err)
		return nil, pf.err
	}
	pf.plan, pf.FromPrefill = plan, true
	return plan.Adapter(nil), nil
}

func (pf *Prefill) freeLens() {
	if pf.lens != nil {
		pf.rt.M.B.Free(pf.lens)
		pf.lens = nil
	}
}

// lengths puts the lengths of seqs on the device, (N) I32.
func (r *Runtime) lengths(seqs [][]int32) (gpu.Tensor, error) {
	ls := make([]int32, len(seqs))
	for b, s := range seqs {
		ls[b] = int32(len(s))
	}
	t, err := r.M.B.Alloc(gpu.I32, len(seqs))
	if err != nil {
		return nil, err
	}
	if err := r.M.B.Write(t, ls); err != nil {
		r.M.B.Free(t)
		return nil, err
	}
	return t, nil
}

// LateHead is a model.Adapter for an update of the head alone that is
// chosen from the forward's own residual stream: its pass leaves the
// blocks to the base model, hands Choose the residual stream after the
// last block (B, T, C; rows: each row's sequence, -1 for padding) and runs
// the head of the adapter Choose returns. Prefill plans this way, and a
// server decides its pending prompts' clusters this way.
type LateHead struct {
	Choose func(x gpu.Tensor, rows []int32) (model.Adapter, error)
}

// Begin implements model.Adapter.
func (l LateHead) Begin(rows, head []int32) (model.Pass, error) {
	return &lateHeadPass{choose: l.Choose, rows: rows, head: head}, nil
}

type lateHeadPass struct {
	choose     func(x gpu.Tensor, rows []int32) (model.Adapter, error)
	rows, head []int32
	inner      model.Pass
}

func (p *lateHeadPass) Updates(model.Site) bool                         { return false }
func (p *lateHeadPass) Linear(model.Site, gpu.Tensor, gpu.Tensor) error { return nil }

// Residual chooses the adapter and begins its pass for the head.
func (p *lateHeadPass) Residual(x gpu.Tensor) error {
	ad, err := p.choose(x, p.rows)
	if err != nil {
		return err
	}
	p.inner, err = ad.Begin(p.rows, p.head)
	return err
}

func (p *lateHeadPass) Logits(dst, h gpu.Tensor) (bool, error) {
	if p.inner == nil {
		return false, fmt.Errorf("adapt: a head chosen from the residual stream got no residual stream before the logits")
	}
	return p.inner.Logits(dst, h)
}

func (p *lateHeadPass) End() {
	if p.inner != nil {
		p.inner.End()
	}
}

// planFromResidual is Plan over seqs with the base pass taken from x, the
// residual stream (B, T, C) of a forward of exactly seqs from an empty
// cache (rows: each row's sequence, -1 past its tokens): its final layer
// norm gives the rows, their means the hidden features, and, for a
// self-check, the base head over them the base losses. The rows stay on
// the device (deviceRows; lens: the prompts' lengths there, nil to write
// them now) unless tuning needs them on the host.
func (r *Runtime) planFromResidual(seqs [][]int32, o PlanOptions, x gpu.Tensor, rows []int32, lens gpu.Tensor) (*Plan, error) {
	sh := x.Shape()
	n, c := len(seqs), r.M.Cfg.NEmbd
	if len(sh) != 3 || sh[0] != n || sh[2] != c || len(rows) != sh[0]*sh[1] {
		return nil, fmt.Errorf("residual stream %v with %d rows for %d prompts", sh, len(rows), n)
	}
	tq := sh[1]
	for b, s := range seqs {
		for t := range tq {
			if want := t < len(s); (rows[b*tq+t] == int32(b)) != want {
				return nil, fmt.Errorf("the forward's sequence %d does not hold prompt %d's %d tokens from an empty cache", b, b, len(s))
			}
		}
	}
	// base stays nil: the self-check scores the base and adapted heads
	// together from the rows (Plan.checkScores).
	pp := &promptPass{losses: make([][]float32, n)}
	var err error
	if o.Tune.Steps > 0 || r.rowsOnHost {
		// Tuning reads the rows on the host.
		err = r.hostRows(pp, seqs, x)
	} else {
		err = r.deviceRows(pp, seqs, x, lens)
		if pp.dev != nil {
			defer r.M.B.Free(pp.dev)
		}
	}
	if err != nil {
		return nil, err
	}
	all := make([]int, n)
	for b := range seqs {
		all[b] = b
	}
	if err := normaliseMeans(pp.hidden, c, all, func(k int) int { return len(seqs[k]) }); err != nil {
		return nil, err
	}
	p := &Plan{rt: r, Cluster: make([]int, n), Alpha: r.Meta.Alpha}
	return r.hyperPlan(p, seqs, o, pp)
}

// hostRows fills pp's rows and hidden sums from the residual stream x
// (B, T, C) of a prefill of seqs: the final layer norm of every row, read
// back.
func (r *Runtime) hostRows(pp *promptPass, seqs [][]int32, x gpu.Tensor) error {
	hs, err := r.FinalRows(x)
	if err != nil {
		return err
	}
	n, tq, c := len(seqs), x.Shape()[1], r.M.Cfg.NEmbd
	pp.hidden, pp.rows = make([]float32, n*c), make([][]float32, n)
	for b, s := range seqs {
		pp.rows[b] = hs[b*tq*c : (b*tq+len(s))*c : (b*tq+len(s))*c]
		dst := pp.hidden[b*c : (b+1)*c]
		for t := range s {
			for j, v := range pp.rows[b][t*c : (t+1)*c] {
				dst[j] += v
			}
		}
	}
	return nil
}

// deviceRows is hostRows with the rows left on the device (pp.dev, which
// the caller frees): only each prompt's sum comes back (Ops.SequenceSums
// over the lengths lens, (B) I32; nil: written here, which waits for the
// forward recorded so far), B x C values instead of B x T x C, and the
// self-check gathers the rows it scores there.
func (r *Runtime) deviceRows(pp *promptPass, seqs [][]int32, x, lens gpu.Tensor) error {
	be := r.M.B
	n, tq, c := len(seqs), x.Shape()[1], r.M.Cfg.NEmbd
	if lens == nil {
		var err error
		if lens, err = r.lengths(seqs); err != nil {
			return err
		}
		defer be.Free(lens)
	}
	h, err := be.Alloc(gpu.F32, n, tq, c)
	if err != nil {
		return err
	}
	pp.dev, pp.devT = h, tq
	sums, err := be.Alloc(gpu.F32, n, c)
	if err != nil {
		return err
	}
	defer be.Free(sums)
	r.M.FinalNorm(h, x)
	r.ops.SequenceSums(sums, h, lens)
	pp.hidden, err = be.ReadF32(sums)
	return err
}
