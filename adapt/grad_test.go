package adapt

import (
	"math"
	"math/rand/v2"
	"testing"
)

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
