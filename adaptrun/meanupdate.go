package adaptrun

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/adapt"
)

// hyperForward runs a hyper adapter's network (file form: raw inputs) on
// the host: the packed factors A (R, C) then B (V, R) of one input.
func hyperForward(a *adapt.Adapter, x []float32) []float32 {
	ts := a.HyperTensors()
	layers := len(ts) / 2
	for l := range layers {
		w, b := ts[2*l], ts[2*l+1]
		out, in := w.Shape[0], w.Shape[1]
		y := make([]float32, out)
		for o := range out {
			acc := float64(b.Data[o])
			row := w.Data[o*in : (o+1)*in]
			for i, xv := range x {
				acc += float64(row[i]) * float64(xv)
			}
			y[o] = float32(acc)
			if l < layers-1 && y[o] < 0 {
				y[o] = 0
			}
		}
		x = y
	}
	return x
}

// meanUpdate is alpha * Σ_g (|g|/n) B_g A_g, the (V, C) mean of the
// updates a hyper adapter generates for groups gs, plus, for a hybrid
// adapter, its static pair's alpha * Bs As (which every group shares).
func meanUpdate(t *Trained, gs []group, n int) ([]float32, error) {
	meta := t.Adapter.Meta
	c, v, r := meta.Base.Config.NEmbd, meta.Base.Config.VocabSize, meta.Rank
	dw := make([]float64, v*c)
	if meta.Basis {
		return meanBasisUpdate(t, gs, n), nil
	}
	for _, g := range gs {
		p := hyperForward(t.Adapter, g.Means)
		if len(p) != r*c+v*r {
			return nil, fmt.Errorf("adaptrun: hyper-network output of %d values, want %d", len(p), r*c+v*r)
		}
		a, b := p[:r*c], p[r*c:]
		wgt := float64(meta.Alpha) * float64(len(g.Members)) / float64(n)
		for vi := range v {
			row := dw[vi*c : (vi+1)*c]
			for j := range r {
				bj := wgt * float64(b[vi*r+j])
				if bj == 0 {
					continue
				}
				for ci, av := range a[j*c : (j+1)*c] {
					row[ci] += bj * float64(av)
				}
			}
		}
	}
	if sp := t.Adapter.StaticPair(); sp != nil {
		rs := meta.StaticRank
		a, b := sp[0].Data, sp[1].Data
		for vi := range v {
			row := dw[vi*c : (vi+1)*c]
			for j := range rs {
				bj := float64(meta.Alpha) * float64(b[vi*rs+j])
				if bj == 0 {
					continue
				}
				for ci, av := range a[j*c : (j+1)*c] {
					row[ci] += bj * float64(av)
				}
			}
		}
	}
	out := make([]float32, len(dw))
	for i, x := range dw {
		out[i] = float32(x)
	}
	return out, nil
}

// meanBasisUpdate is meanUpdate for a gated basis: the update is linear
// in the gates, so the mean update is alpha * B diag(1 + mean g) A, the
// gates' mean weighted by group size.
func meanBasisUpdate(t *Trained, gs []group, n int) []float32 {
	meta := t.Adapter.Meta
	c, v, r := meta.Base.Config.NEmbd, meta.Base.Config.VocabSize, meta.Rank
	gm := make([]float64, r)
	for _, g := range gs {
		for j, x := range hyperForward(t.Adapter, g.Means) {
			gm[j] += float64(len(g.Members)) / float64(n) * float64(x)
		}
	}
	sp := t.Adapter.StaticPair()
	a, b := sp[0].Data, sp[1].Data
	out := make([]float32, v*c)
	row := make([]float64, c)
	for vi := range v {
		clear(row)
		for j := range r {
			bj := float64(meta.Alpha) * float64(b[vi*r+j]) * (1 + gm[j])
			if bj == 0 {
				continue
			}
			for ci, av := range a[j*c : (j+1)*c] {
				row[ci] += bj * float64(av)
			}
		}
		for ci, x := range row {
			out[vi*c+ci] = float32(x)
		}
	}
	return out
}
