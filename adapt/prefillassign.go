package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Online assignment from a chunked prefill. A server feeds each prompt a
// chunk a step (serve's scheduler), and AssignCentroids would run the base
// model over the admitted prompts once more before that, just for their
// hidden states. For an adapter of the head alone the prefill's own final
// hidden rows are those states: a PromptRows keeps what the assignment
// needs of them as the chunks go by (their sum, the hidden feature, and
// the rows of the predictions the self-check scores), and AssignPrefilled
// decides each prompt's cluster in the step that feeds its last token,
// before that step's head, as AssignCentroids would have from a pass of
// its own.

// PromptRows is one prompt's final hidden rows, fed chunk by chunk in
// order (Feed), as far as online assignment reads them.
type PromptRows struct {
	Prompt []int32
	c      int
	fed    int
	keep   int       // rows the self-check reads: the last keep of the prompt
	sum    []float32 // (C) the rows' sum, in row order, as the shared base pass sums them
	tail   []float32 // the last rows fed, at most keep
}

// AssignsInPrefill reports whether the prefill of prompt can give its
// online assignment (PromptRows, AssignPrefilled): a hyper adapter of the
// head alone with training centroids, whose features include hidden
// states, and a prompt of 1 to NCtx tokens. Otherwise AssignCentroids
// (with its own base pass) is the way.
func (r *Runtime) AssignsInPrefill(prompt []int32) bool {
	return r.Centroids != nil && r.plansInPrefill([][]int32{prompt})
}

// NewPromptRows starts following prompt's prefill. It fails where
// AssignsInPrefill does not hold.
func (r *Runtime) NewPromptRows(prompt []int32) (*PromptRows, error) {
	if !r.AssignsInPrefill(prompt) {
		return nil, fmt.Errorf("adapt: a prompt of %d tokens cannot be assigned from its prefill with this %s adapter (features %s, %d block sites, centroids %v)",
			len(prompt), r.Meta.Kind, r.Meta.Features, len(r.sites), r.Centroids != nil)
	}
	c := r.M.Cfg.NEmbd
	keep := len(prompt)
	if n := r.checkTokens(); n > 0 {
		keep = min(keep, n+1) // n predictions read n+1 rows, the last one's too
	}
	return &PromptRows{Prompt: prompt, c: c, keep: keep, sum: make([]float32, c)}, nil
}

// Fed is how many of the prompt's rows have been fed.
func (p *PromptRows) Fed() int { return p.fed }

// Done reports whether every row of the prompt has been fed.
func (p *PromptRows) Done() bool { return p.fed == len(p.Prompt) }

// Feed takes the final hidden rows (after the final layer norm, the base
// model's) of the prompt's next len(rows)/C positions.
func (p *PromptRows) Feed(rows []float32) error {
	n := len(rows) / p.c
	if len(rows)%p.c != 0 || p.fed+n > len(p.Prompt) {
		return fmt.Errorf("adapt: %d hidden values fed to a prompt of %d tokens at %d rows of %d", len(rows), len(p.Prompt), p.fed, p.c)
	}
	for t := 0; t < n; t++ {
		for j, v := range rows[t*p.c : (t+1)*p.c] {
			p.sum[j] += v
		}
	}
	p.advance(n, rows)
	return nil
}

// advance counts n more rows fed, the last of which are tail, and keeps
// the last keep rows fed.
func (p *PromptRows) advance(n int, tail []float32) {
	p.fed += n
	p.tail = append(p.tail, tail...)
	if over := len(p.tail) - p.keep*p.c; over > 0 {
		p.tail = append(p.tail[:0], p.tail[over:]...)
	}
}

// tailFrom is how many of the next rows fed come before the rows the
// self-check reads (0: all of them are read).
func (p *PromptRows) tailFrom() int { return max(0, len(p.Prompt)-p.keep-p.fed) }

// FeedResidual feeds prs[b] (nil: a sequence nobody follows) the final
// hidden rows of its next ns[b] positions, rows 0..ns[b]-1 of sequence b
// of the residual stream x (B, T, C) of a chunked prefill step. The rows
// stay on the device: each chunk's sum (Ops.SequenceSums) and the few rows
// the self-check will read (the prompt's last keep, gathered with
// Backend.Rows) come back, B x C values and at most keep rows a prompt
// instead of Runtime.FinalRows' B x T x C. Feed is the host-side
// equivalent; the sums differ from its row-by-row ones in rounding only.
func (r *Runtime) FeedResidual(x gpu.Tensor, prs []*PromptRows, ns []int) error {
	sh := x.Shape()
	c := r.M.Cfg.NEmbd
	if len(sh) != 3 || sh[2] != c || len(prs) != sh[0] || len(ns) != sh[0] {
		return fmt.Errorf("adapt: FeedResidual: residual stream %v for %d prompts (%d counts) of width %d", sh, len(prs), len(ns), c)
	}
	bsz, tq := sh[0], sh[1]
	lens := make([]int32, bsz)
	var at []int32 // the rows to read: b*tq + t, in slot then position order
	for b, p := range prs {
		if p == nil || ns[b] == 0 {
			continue
		}
		switch {
		case ns[b] < 0 || ns[b] > tq:
			return fmt.Errorf("adapt: FeedResidual: %d rows of sequence %d in a step of %d", ns[b], b, tq)
		case p.c != c || p.fed+ns[b] > len(p.Prompt):
			return fmt.Errorf("adapt: %d rows of %d values fed to a prompt of %d tokens at %d rows of %d", ns[b], c, len(p.Prompt), p.fed, p.c)
		}
		lens[b] = int32(ns[b])
		for t := p.tailFrom(); t < ns[b]; t++ {
			at = append(at, int32(b*tq+t))
		}
	}
	be := r.M.B
	sc := gpu.Scratch{B: be}
	defer sc.Free()
	h, err := sc.Alloc(gpu.F32, bsz, tq, c)
	if err != nil {
		return err
	}
	lensT, err := sc.Alloc(gpu.I32, bsz)
	if err != nil {
		return err
	}
	if err := be.Write(lensT, lens); err != nil {
		return err
	}
	sumsT, err := sc.Alloc(gpu.F32, bsz, c)
	if err != nil {
		return err
	}
	r.M.FinalNorm(h, x)
	r.ops.SequenceSums(sumsT, h, lensT)
	var tails []float32
	if len(at) > 0 {
		tailT, err := (rowBatch{src: h, at: at}).upload(be, sc.Alloc, len(at), c)
		if err != nil {
			return err
		}
		if tails, err = be.ReadF32(tailT); err != nil {
			return err
		}
	}
	sums, err := be.ReadF32(sumsT)
	if err != nil {
		return err
	}
	for b, p := range prs {
		if lens[b] == 0 {
			continue
		}
		for j, v := range sums[b*c : (b+1)*c] {
			p.sum[j] += v
		}
		k := max(0, ns[b]-p.tailFrom()) // rows of the chunk read back
		p.advance(ns[b], tails[:k*c])
		tails = tails[k*c:]
	}
	return nil
}

// AssignPrefilled is AssignCentroids for prompts whose every row has been
// fed: each one's nearest training centroid from its hidden (and, for
// FeatureBoth, embedding) features, -1 where the gate closes or the
// self-check (on the fed rows of its last predictions) finds the update
// no better than the base model.
func (r *Runtime) AssignPrefilled(ps []*PromptRows) ([]int, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	n, c := len(ps), r.M.Cfg.NEmbd
	seqs := make([][]int32, n)
	pp := &promptPass{hidden: make([]float32, n*c), losses: make([][]float32, n), rows: make([][]float32, n)}
	tails := make([][]int32, n)
	all := make([]int, n)
	for i, p := range ps {
		if !p.Done() {
			return nil, fmt.Errorf("adapt: prompt %d: %d of its %d rows fed", i, p.fed, len(p.Prompt))
		}
		if p.c != c {
			return nil, fmt.Errorf("adapt: prompt %d was followed with rows of %d values, the model's are %d", i, p.c, c)
		}
		seqs[i], all[i] = p.Prompt, i
		copy(pp.hidden[i*c:(i+1)*c], p.sum)
		tails[i], pp.rows[i] = p.Prompt[len(p.Prompt)-p.keep:], p.tail
	}
	if err := normaliseMeans(pp.hidden, c, all, func(k int) int { return len(seqs[k]) }); err != nil {
		return nil, err
	}
	ft, feats, err := r.featuresWith(seqs, pp.hidden)
	if err != nil {
		return nil, err
	}
	defer r.cops.Free(ft)
	as, err := r.Centroids.AssignOn(r.cops, ft)
	if err != nil {
		return nil, err
	}
	if err := r.closeGate(as, seqs, feats, pp.hidden); err != nil {
		return nil, err
	}
	if r.Meta.SelfCheck {
		// The self-check of the whole prompts reads only their last rows:
		// the tails score the same predictions.
		if _, err := r.checkCentroids(tails, as, pp, feats); err != nil {
			return nil, err
		}
	}
	return as, nil
}

// FinalRows is the final layer norm of a residual stream x (B, T, C), the
// rows the head reads, on the host: what a prefill feeds PromptRows.
func (r *Runtime) FinalRows(x gpu.Tensor) ([]float32, error) {
	m := r.M
	h, err := m.B.Alloc(gpu.F32, x.Shape()...)
	if err != nil {
		return nil, err
	}
	defer m.B.Free(h)
	m.FinalNorm(h, x)
	return m.B.ReadF32(h)
}
