package adapt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

var gradCases = []factorCase{
	{m: 1, c: 1, v: 1, r: 1, k: 1},
	{m: 3, c: 5, v: 7, r: 2, k: 1, noCluster: true},
	{m: 127, c: 33, v: 129, r: 4, k: 3},
	{m: 129, c: 64, v: 257, r: 8, k: 5, packed: true},
	{m: 64, c: 3, v: 4096, r: 8, k: 1, packed: true, noCluster: true},
	{m: 300, c: 768, v: 50, r: 16, k: 2},
	{m: 129, c: 64, v: 257, r: 8, k: 5, packed: true, uniform: 3},
	{m: 2048, c: 64, v: 4096, r: 8, k: 6, uniform: 6},
	{m: 33, c: 5, v: 7, r: 3, k: 1, uniform: 1},
}

// TestLowRankBackward compares the WGSL gradient kernels with the reference
// on random inputs: rows of several clusters interleaved with rows that
// have none (-1, K), clusters with no rows, packed and separate factors.
func TestLowRankBackward(t *testing.T) {
	p, refOps, gotOps := pair(t)
	for _, fc := range gradCases {
		t.Run(fc.String(), func(t *testing.T) {
			fRef, fGot, free := testFactors(t, p, fc)
			defer free()
			_, ids := testClusters(t, p, fc)
			if fc.uniform > 0 { // every row in one cluster: the matmul path
				for i := range ids {
					ids[i] = int32(fc.uniform - 1)
				}
			}
			h := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.c, 1), fc.m, fc.c)
			u := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.r, 1), fc.m, fc.r)
			dl := p.Upload(t, gpu.F32, p.Randn(fc.m*fc.v, 0.1), fc.m, fc.v)
			var dRef, dGot Factors
			var grads []conformance.Tensors
			if fc.packed {
				g := p.Poisoned(t, gpu.F32, fc.k, fc.r*fc.c+fc.v*fc.r)
				dRef, dGot = PackedFactors(g.Ref, fc.r, fc.c, fc.v), PackedFactors(g.Got, fc.r, fc.c, fc.v)
				grads = append(grads, g)
			} else {
				ga := p.Poisoned(t, gpu.F32, fc.k, fc.r, fc.c)
				gb := p.Poisoned(t, gpu.F32, fc.k, fc.v, fc.r)
				dRef, dGot = NewFactors(ga.Ref, gb.Ref), NewFactors(ga.Got, gb.Got)
				grads = append(grads, ga, gb)
			}
			const alpha = 0.7
			du := p.Poisoned(t, gpu.F32, fc.m, fc.r)
			if err := refOps.LowRankBackwardInput(dRef, du.Ref, dl.Ref, h.Ref, u.Ref, fRef, ids, alpha); err != nil {
				t.Fatal(err)
			}
			if err := gotOps.LowRankBackwardInput(dGot, du.Got, dl.Got, h.Got, u.Got, fGot, ids, alpha); err != nil {
				t.Fatal(err)
			}
			p.Close(t, "du", du, 1e-4*math.Sqrt(float64(fc.v)), 1e-3)
			grads = append(grads, du)
			// dA sums M rows of du (itself a V-long dot product) times h:
			// terms of size ~sqrt(V)/10 cancel to small results, so f32's
			// rounding grows with M in absolute terms.
			atol := 1e-4 * max(1, float64(fc.m)/64)
			for i, g := range grads {
				p.Close(t, fmt.Sprintf("gradient %d", i), g, atol, 1e-3)
			}
			p.Free(append(grads, h, u, dl)...)
		})
	}
}

func TestReLUBackward(t *testing.T) {
	p, refOps, gotOps := pair(t)
	for _, n := range []int{1, 3, 257, 5000} {
		for _, withMask := range []bool{false, true} {
			x := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			dy := p.Upload(t, gpu.F32, p.Randn(n, 1), n)
			mv := make([]float32, n)
			for i := range mv {
				if p.Rng.IntN(2) == 0 {
					mv[i] = 2
				}
			}
			mk := p.Upload(t, gpu.F32, mv, n)
			dx := p.Poisoned(t, gpu.F32, n)
			var mr, mg gpu.Tensor
			if withMask {
				mr, mg = mk.Ref, mk.Got
			}
			refOps.ReLUBackward(dx.Ref, dy.Ref, x.Ref, mr)
			gotOps.ReLUBackward(dx.Got, dy.Got, x.Got, mg)
			p.Close(t, fmt.Sprintf("n=%d mask=%v", n, withMask), dx, 0, 0)
			p.Free(x, dy, mk, dx)
		}
	}
}

// TestRefLowRankBackwardFD checks the reference gradients against central
// finite differences of L = Σ G ⊙ logits, logits from RefLogits (the
// forward the kernels differentiate), in float64-friendly sizes.
func TestRefLowRankBackwardFD(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	const m, c, v, r, k = 7, 5, 6, 3, 3
	const alpha = 0.5
	randn := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64())
		}
		return out
	}
	h, w, g := randn(m*c), randn(v*c), randn(m*v)
	a, b := randn(k*r*c), randn(k*v*r)
	cl := []int32{0, 2, -1, 2, 0, 3, 2} // cluster 1 has no rows; -1 and 3 none
	l := Layout{K: k, R: r, C: c, V: v, AStride: r * c, BStride: v * r}
	loss := func() float64 {
		out := make([]float32, m*v)
		RefLogits(out, h, w, nil, a, b, cl, l, alpha)
		var s float64
		for i := range out {
			s += float64(out[i]) * float64(g[i])
		}
		return s
	}
	u := make([]float32, m*r)
	RefLowRankU(u, h, a, cl, l, alpha)
	da, db := make([]float32, k*r*c), make([]float32, k*v*r)
	RefLowRankBackward(da, db, g, h, u, b, cl, l, l, alpha)
	check := func(name string, p, grad []float32) {
		for i := range p {
			old := p[i]
			const eps = 1e-2
			p[i] = old + eps
			lp := loss()
			p[i] = old - eps
			lm := loss()
			p[i] = old
			fd := (lp - lm) / (2 * eps)
			if math.Abs(fd-float64(grad[i])) > 2e-3*(1+math.Abs(fd)) {
				t.Fatalf("%s[%d]: analytic %g, finite difference %g", name, i, grad[i], fd)
			}
		}
	}
	check("A", a, da)
	check("B", b, db)
	for i := r * c; i < 2*r*c; i++ { // cluster 1 has no rows
		if da[i] != 0 {
			t.Fatalf("dA of an empty cluster is %g", da[i])
		}
	}
}
