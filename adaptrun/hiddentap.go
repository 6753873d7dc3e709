package adaptrun

import (
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// hiddenTap is an adapter that reads the final hidden states the head
// sees (ln_f output, every logits row) back to the host, then leaves the
// logits to inner (nil: the base model's).
type hiddenTap struct {
	b     gpu.Backend
	inner model.Adapter
	h     []float32
}

// Begin implements model.Adapter.
func (t *hiddenTap) Begin(rows, head []int32) (model.Pass, error) {
	p := &tapPass{t: t}
	if t.inner != nil {
		var err error
		if p.inner, err = t.inner.Begin(rows, head); err != nil {
			return nil, err
		}
	}
	return p, nil
}

type tapPass struct {
	t     *hiddenTap
	inner model.Pass
}

func (p *tapPass) Linear(s model.Site, y, x gpu.Tensor) error {
	if p.inner == nil {
		return nil
	}
	return p.inner.Linear(s, y, x)
}

func (p *tapPass) Updates(s model.Site) bool { return p.inner != nil && p.inner.Updates(s) }

// MatMul keeps the inner pass's fused site matmuls.
func (p *tapPass) MatMul(s model.Site, y, x, w, bias gpu.Tensor) (bool, error) {
	if mp, ok := p.inner.(model.MatMulPass); ok {
		return mp.MatMul(s, y, x, w, bias)
	}
	return false, nil
}

func (p *tapPass) Logits(dst, h gpu.Tensor) (bool, error) {
	var err error
	if p.t.h, err = p.t.b.ReadF32(h); err != nil {
		return false, err
	}
	if p.inner == nil {
		return false, nil
	}
	return p.inner.Logits(dst, h)
}

func (p *tapPass) End() {
	if p.inner != nil {
		p.inner.End()
	}
}

// addHidden appends each sequence's unit hidden rows (the positions that
// have a loss: all but the last) from the two forwards' (B*tq, c) rows.
func (s *Served) addHidden(base, adapted []float32, seqs [][]int32, c int) {
	tq := len(base) / (c * len(seqs))
	for i, q := range seqs {
		lo, hi := i*tq*c, (i*tq+len(q)-1)*c
		b := adapt.UnitRows(base[lo:hi], c)
		a := b
		if !slices.Equal(base[lo:hi], adapted[lo:hi]) {
			a = adapt.UnitRows(adapted[lo:hi], c)
		}
		s.BaseHidden, s.AdaptedHidden = append(s.BaseHidden, b), append(s.AdaptedHidden, a)
	}
}
