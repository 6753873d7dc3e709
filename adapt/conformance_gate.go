package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// confGateFactors checks gate_rows materialising the gated basis's
// per-cluster factors: one cluster and several, widths that are not a
// multiple of the workgroup, gates near -1 (a component switched off).
func confGateFactors(t conformance.T, p *conformance.Pair) {
	ro, gotOps := New(p.Ref), New(p.Got)
	for _, sh := range []struct{ k, r, c int }{{1, 1, 1}, {1, 8, 33}, {5, 7, 100}, {3, 256, 256}} {
		a := p.Upload(t, gpu.F32, p.Randn(sh.r*sh.c, 1), 1, sh.r, sh.c)
		gs := p.Randn(sh.k*sh.r, 0.5)
		gs[0] = -1
		g := p.Upload(t, gpu.F32, gs, sh.k, sh.r)
		dst := p.Poisoned(t, gpu.F32, sh.k, sh.r, sh.c)
		ro.GateFactors(dst.Ref, a.Ref, g.Ref)
		gotOps.GateFactors(dst.Got, a.Got, g.Got)
		p.Close(t, fmt.Sprintf("K=%d R=%d C=%d", sh.k, sh.r, sh.c), dst, 1e-6, 1e-6)
		p.Free(a, g, dst)
	}
}

// confGateBackward checks GateBackward (gate_rows on du, lowrank_grad_a
// over the gated rows, gate_grad) on random rows with clusters in and out
// of [0, K) (-1: no update), a nil cluster, and a cluster with no rows.
func confGateBackward(t conformance.T, p *conformance.Pair) {
	ro, gotOps := New(p.Ref), New(p.Got)
	for _, sh := range []struct {
		m, k, r, c int
		nilCluster bool
	}{{1, 1, 1, 1, true}, {7, 2, 3, 5, false}, {300, 4, 8, 70, false}, {1000, 3, 64, 256, false}, {129, 1, 16, 33, true}} {
		var cl []int32
		if !sh.nilCluster {
			cl = p.Ints(sh.m, -1, sh.k-1) // cluster k-1 stays empty when k > 1
		}
		h := p.Upload(t, gpu.F32, p.Randn(sh.m*sh.c, 1), sh.m, sh.c)
		du := p.Upload(t, gpu.F32, p.Randn(sh.m*sh.r, 1), sh.m, sh.r)
		u := p.Upload(t, gpu.F32, p.Randn(sh.m*sh.r, 1), sh.m, sh.r)
		g := p.Upload(t, gpu.F32, p.Randn(sh.k*sh.r, 0.5), sh.k, sh.r)
		dA := p.Poisoned(t, gpu.F32, 1, sh.r, sh.c)
		dg := p.Poisoned(t, gpu.F32, sh.k, sh.r)
		for _, x := range []struct {
			o  Ops
			dA gpu.Tensor
			dg gpu.Tensor
			du gpu.Tensor
			u  gpu.Tensor
			h  gpu.Tensor
			g  gpu.Tensor
		}{{ro, dA.Ref, dg.Ref, du.Ref, u.Ref, h.Ref, g.Ref}, {gotOps, dA.Got, dg.Got, du.Got, u.Got, h.Got, g.Got}} {
			if err := x.o.GateBackward(x.dA, x.dg, x.du, x.u, x.h, x.g, cl, 0.75); err != nil {
				t.Fatalf("GateBackward: %v", err)
			}
		}
		what := fmt.Sprintf("M=%d K=%d R=%d C=%d nil cluster=%v", sh.m, sh.k, sh.r, sh.c, sh.nilCluster)
		p.Close(t, what+" dA", dA, 1e-4, 1e-4)
		p.Close(t, what+" dg", dg, 1e-4, 1e-4)
		p.Free(h, du, u, g, dA, dg)
	}
}

// confSequenceSums checks seq_sums: lengths of zero, the whole T, past T
// and negative (clamped), widths that are not a multiple of the
// workgroup, and a prefill's size (32 prompts of 256 rows of 256).
func confSequenceSums(t conformance.T, p *conformance.Pair) {
	ro, gotOps := New(p.Ref), New(p.Got)
	for _, sh := range []struct{ b, t, c int }{{1, 1, 1}, {3, 5, 7}, {4, 17, 65}, {32, 256, 256}} {
		rows := p.Upload(t, gpu.F32, p.Randn(sh.b*sh.t*sh.c, 1), sh.b, sh.t, sh.c)
		ls := p.Ints(sh.b, 0, sh.t)
		ls[0] = int32(sh.t)
		if sh.b > 2 {
			ls[1], ls[2] = int32(sh.t+3), -2
		}
		lengths := p.Upload(t, gpu.I32, ls, sh.b)
		dst := p.Poisoned(t, gpu.F32, sh.b, sh.c)
		ro.SequenceSums(dst.Ref, rows.Ref, lengths.Ref)
		gotOps.SequenceSums(dst.Got, rows.Got, lengths.Got)
		p.Close(t, fmt.Sprintf("B=%d T=%d C=%d lengths %v", sh.b, sh.t, sh.c, ls[:min(3, sh.b)]), dst, 1e-5, 1e-5)
		p.Free(rows, lengths, dst)
	}
}

// confCrossEntropyPair checks crossentropy_pair at both row workgroup
// sizes: vocabularies that are not a multiple of four lanes' strides,
// masked and out-of-range targets, an offset that must cancel, and the
// self-check's size (2,048 rows of 4,096).
func confCrossEntropyPair(t conformance.T, p *conformance.Pair) {
	ro, gotOps := New(p.Ref), New(p.Got)
	conformance.RowWGs(p, func() {
		for _, sh := range [][2]int{{1, 1}, {3, 5}, {9, 1031}, {6, 50257}, {2048, 4096}} {
			m, v := sh[0], sh[1]
			zs := p.Randn(m*v, 3)
			for j := range zs[:v] {
				zs[j] += 1000 // a large offset must cancel
			}
			tg := p.Ints(m, 0, v)
			for r := range tg {
				switch {
				case r%5 == 3:
					tg[r] = -1
				case r%7 == 5:
					tg[r] = int32(v)
				}
			}
			z := p.Upload(t, gpu.F32, zs, m, v)
			d := p.Upload(t, gpu.F32, p.Randn(m*v, 1), m, v)
			tt := p.Upload(t, gpu.I32, tg, m)
			base, adapted := p.Poisoned(t, gpu.F32, m), p.Poisoned(t, gpu.F32, m)
			for _, x := range []struct {
				o                            Ops
				base, adapted, z, d, targets gpu.Tensor
			}{{ro, base.Ref, adapted.Ref, z.Ref, d.Ref, tt.Ref}, {gotOps, base.Got, adapted.Got, z.Got, d.Got, tt.Got}} {
				if err := x.o.CrossEntropyPair(x.base, x.adapted, x.z, x.d, x.targets); err != nil {
					t.Fatalf("CrossEntropyPair: %v", err)
				}
			}
			what := fmt.Sprintf("%s, %dx%d", p.Got.Name(), m, v)
			if w, ok := p.Got.(*gpu.WebGPU); ok {
				what = fmt.Sprintf("RowWG %d, %dx%d", w.RowWG, m, v)
			}
			p.Close(t, what+" base", base, 2e-5, 2e-6)
			p.Close(t, what+" adapted", adapted, 2e-5, 2e-6)
			p.Free(z, d, tt, base, adapted)
		}
	})
}
