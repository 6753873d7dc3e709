package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// selfCheck keeps the base model (cluster -1) for every sequence whose own
// tokens its cluster's update does not predict better than the base model
// does (summed loss of its last checkTokens next-token predictions, or a
// staged check's first stage, CheckStages): the update is used only where
// the sequence itself is evidence for it. A sequence of fewer than 2
// tokens has no such evidence and keeps the base model. With pp (the
// plan's shared base forward, basePass, or a prefill's) and an update of
// the head alone, both losses come from pp's hidden rows (no forward), and
// a prefill's skip what a staged check need not score; without pp, it
// costs two forwards over the sequences. With pp and a head-only update it
// also returns each sequence's per-position losses under the decision
// (pp.decided; nil for a kept sequence whose prompt was scored only in
// part), which a caller can reuse instead of scoring the sequences again;
// else nil.
func (p *Plan) selfCheck(seqs [][]int32, pp *promptPass) ([][]float32, error) {
	idx, check, from := p.checkSet(seqs)
	if len(check) == 0 {
		return pp.decided(nil, nil), nil
	}
	st := p.rt.stages()
	cl, err := p.checkLosses(seqs, pp, idx, check, from, st)
	if err != nil {
		return nil, err
	}
	kept := map[int][]float32{}
	partial := map[int]bool{}
	for j, i := range idx {
		switch {
		case !cl.early[j] && !keeps(st, cl.base[j], cl.adapted[j]):
			p.Cluster[i] = -1
		case cl.per && (from[j] > 0 || cl.early[j]):
			partial[i] = true
		case cl.per:
			kept[i] = cl.adapted[j]
		}
	}
	if !cl.per {
		return nil, nil
	}
	return pp.decided(kept, partial), nil
}

// checkSet is the sequences a self-check scores: those with a cluster,
// each cut to the model's context (idx: their plan indices; check: their
// tokens), and from each the first prediction scored (that of token
// from+1), so that at most the runtime's checkTokens are. A sequence of
// fewer than 2 tokens has no evidence and gets cluster -1.
func (p *Plan) checkSet(seqs [][]int32) (idx []int, check [][]int32, from []int) {
	m := p.rt.M
	for i, s := range seqs {
		if p.Cluster[i] < 0 {
			continue
		}
		if len(s) < 2 {
			p.Cluster[i] = -1
			continue
		}
		if len(s) > m.Cfg.NCtx {
			s = s[len(s)-m.Cfg.NCtx:]
		}
		idx, check = append(idx, i), append(check, s)
	}
	from = make([]int, len(idx))
	for j, s := range check {
		if n := p.rt.checkTokens(); n > 0 && len(s)-1 > n {
			from[j] = len(s) - 1 - n
		}
	}
	return idx, check, from
}

// checked is the self-check's losses of each checked sequence's checked
// predictions (base and adapted, in order): all of them, or, where early
// (a staged check kept the update on its first stage alone), the first
// stage's. per says they came from pp's hidden rows, so that the adapted
// ones can stand for the sequence's scores.
type checked struct {
	base, adapted [][]float32
	early         []bool
	per           bool
}

// checkLosses scores the checked predictions of check (plan sequences
// idx, from from) from one of three sources: a prefill's rows (both heads
// from one projection, staged where st is), a base pass's losses and rows,
// or two forwards.
func (p *Plan) checkLosses(seqs [][]int32, pp *promptPass, idx []int, check [][]int32, from []int, st CheckStages) (checked, error) {
	m := p.rt.M
	c := m.Cfg.NEmbd
	out := checked{base: make([][]float32, len(idx)), adapted: make([][]float32, len(idx)), early: make([]bool, len(idx))}
	switch {
	case pp != nil && pp.base == nil && (pp.rows != nil || pp.dev != nil):
		// A pass that scored nothing yet (a prefill's).
		if err := p.prefillCheck(seqs, pp, idx, from, st, &out); err != nil {
			return out, err
		}
		for j, i := range idx {
			if pp.losses[i] = out.base[j]; from[j] > 0 || out.early[j] {
				pp.losses[i] = nil // known in part
			}
		}
		out.per = true
		return out, nil
	case pp != nil:
		for j, i := range idx {
			out.base[j] = pp.losses[i][from[j]:]
		}
	default:
		sc, err := m.ScoreChunked(check, func(int) model.Adapter { return nil })
		if err != nil {
			return out, fmt.Errorf("adapt: self-check: %w", err)
		}
		for j := range sc {
			out.base[j] = sc[j].Losses[from[j]:]
		}
	}
	if pp != nil && pp.rows != nil {
		tseqs, trows := make([][]int32, len(seqs)), make([][]float32, len(seqs))
		for j, i := range idx {
			tseqs[i], trows[i] = seqs[i][from[j]:], pp.rows[i][from[j]*c:]
		}
		_, per, err := p.headScores(idx, tseqs, trows)
		if err != nil {
			return out, err
		}
		out.adapted, out.per = per, true
		return out, nil
	}
	sc, err := m.ScoreChunked(check, func(first int) model.Adapter { return p.AdapterOf(idx[first:], nil) })
	if err != nil {
		return out, fmt.Errorf("adapt: self-check: %w", err)
	}
	for j := range sc {
		out.adapted[j] = sc[j].Losses[from[j]:]
	}
	return out, nil
}

// prefillCheck fills out from a prefill's rows: both heads from one
// projection (checkScores). Staged, it projects every sequence's first
// stage, and the rest only of those the first stage does not keep.
func (p *Plan) prefillCheck(seqs [][]int32, pp *promptPass, idx []int, from []int, st CheckStages, out *checked) error {
	c := p.rt.M.Cfg.NEmbd
	// items is the rows at offsets offs[k] of the checked window of
	// sequence idx[js[k]] (nil offsets: every prediction).
	items := func(js []int, offs [][]int) ([]int, []rowItems, error) {
		plan, it := make([]int, len(js)), make([]rowItems, len(js))
		for k, j := range js {
			i := idx[j]
			var err error
			if pp.dev != nil {
				it[k], err = deviceItems(seqs[i][from[j]:], i*pp.devT+from[j], offs[k])
			} else {
				it[k], err = windowItems(seqs[i][from[j]:], pp.rows[i][from[j]*c:], offs[k], c)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("adapt: self-check: sequence %d: %w", i, err)
			}
			plan[k] = i
		}
		return plan, it, nil
	}
	every := make([]int, len(idx))
	for j := range idx {
		every[j] = j
	}
	first := make([][]int, len(idx))
	staged := false
	for j, i := range idx {
		if first[j] = st.FirstStage(len(seqs[i]) - 1 - from[j]); first[j] != nil {
			staged = true
		}
	}
	_, it, err := items(every, first)
	if err != nil {
		return err
	}
	pers, err := p.checkScores(idx, it, pp.devRows())
	if err != nil {
		return err
	}
	copy(out.base, pers[0])
	copy(out.adapted, pers[1])
	if !staged {
		return nil
	}
	return p.secondStage(seqs, idx, from, st, first, items, pp.devRows(), out)
}

// secondStage scores the rest of every sequence whose first stage (first)
// did not keep its update (out.early) and merges both stages into window
// order in out.
func (p *Plan) secondStage(seqs [][]int32, idx, from []int, st CheckStages, first [][]int,
	items func(js []int, offs [][]int) ([]int, []rowItems, error), src gpu.Tensor, out *checked) error {
	rest := make([][]int, len(idx))
	var ridx []int
	var roffs [][]int
	for j := range idx {
		if first[j] == nil {
			continue
		}
		if out.early[j] = st.EarlyKeep(out.base[j], out.adapted[j]); out.early[j] {
			continue
		}
		n := len(seqs[idx[j]]) - 1 - from[j]
		in := make([]bool, n)
		for _, o := range first[j] {
			in[o] = true
		}
		for o := range n {
			if !in[o] {
				rest[j] = append(rest[j], o)
			}
		}
		ridx, roffs = append(ridx, j), append(roffs, rest[j])
	}
	if len(ridx) == 0 {
		return nil
	}
	plan, rits, err := items(ridx, roffs)
	if err != nil {
		return err
	}
	second, err := p.checkScores(plan, rits, src)
	if err != nil {
		return err
	}
	for k, j := range ridx {
		n := len(first[j]) + len(rest[j])
		b, a := make([]float32, n), make([]float32, n)
		for q, o := range first[j] {
			b[o], a[o] = out.base[j][q], out.adapted[j][q]
		}
		for q, o := range rest[j] {
			b[o], a[o] = second[0][k][q], second[1][k][q]
		}
		out.base[j], out.adapted[j] = b, a
	}
	return nil
}

func keeps(st CheckStages, base, adapted []float32) bool {
	k, _ := st.Decide(base, adapted)
	return k
}
