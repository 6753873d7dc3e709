package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Factors locates K pairs of low-rank factors (A_k, B_k) on a backend:
//
//	A_k[j, i] = A[AOff + k*AStride + j*C + i]   A_k is (R, C)
//	B_k[v, j] = B[BOff + k*BStride + v*R + j]   B_k is (V, R)
//
// so the factors may be two tensors A (K, R, C) and B (K, V, R) (NewFactors)
// or the rows of a hyper-network output that packs [A_k | B_k] per cluster
// (PackedFactors), read in place without a copy. Both tensors are F32.
type Factors struct {
	Layout
	A, B gpu.Tensor
}

// Layout is where K factor pairs of rank R for width C and vocabulary V lie
// in their tensors' elements (see Factors); the plain-Go references take
// it with host slices.
type Layout struct {
	K, R, C, V    int
	AOff, AStride int
	BOff, BStride int
}

// NewFactors describes A (K, R, C) and B (K, V, R). It panics unless both
// are F32 with agreeing K and R.
func NewFactors(a, b gpu.Tensor) Factors {
	as, bs := a.Shape(), b.Shape()
	if len(as) != 3 || len(bs) != 3 || as[0] != bs[0] || as[1] != bs[2] {
		panic(fmt.Sprintf("adapt: factors A %v and B %v: want A (K, R, C) and B (K, V, R)", as, bs))
	}
	gpu.CheckShape("Factors", "A", a, gpu.F32, as...)
	gpu.CheckShape("Factors", "B", b, gpu.F32, bs...)
	k, r, c, v := as[0], as[1], as[2], bs[1]
	return Factors{Layout{K: k, R: r, C: c, V: v, AStride: r * c, BStride: v * r}, a, b}
}

// PackedFactors describes a hyper-network output p (K, R*C + V*R) whose row
// k is A_k (R, C) flattened row-major followed by B_k (V, R) flattened
// row-major. It panics unless p is F32 of that shape.
func PackedFactors(p gpu.Tensor, r, c, v int) Factors {
	s := p.Shape()
	if len(s) != 2 || s[1] != r*c+v*r || r <= 0 {
		panic(fmt.Sprintf("adapt: packed factors %v: want (K, R*C + V*R) = (K, %d) for R=%d C=%d V=%d", s, r*c+v*r, r, c, v))
	}
	gpu.CheckShape("PackedFactors", "p", p, gpu.F32, s...)
	n := r*c + v*r
	return Factors{Layout{K: s[0], R: r, C: c, V: v, AStride: n, BOff: r * c, BStride: n}, p, p}
}

// check panics unless the factors' ranges lie inside their tensors.
func (f Factors) check(op string) {
	if f.A == nil || f.B == nil || f.K <= 0 || f.R <= 0 || f.C <= 0 || f.V <= 0 {
		panic(fmt.Sprintf("adapt: %s: factors K=%d R=%d C=%d V=%d with tensors %v, %v: all must be set", op, f.K, f.R, f.C, f.V, f.A != nil, f.B != nil))
	}
	gpu.CheckShape(op, "A", f.A, gpu.F32, f.A.Shape()...)
	gpu.CheckShape(op, "B", f.B, gpu.F32, f.B.Shape()...)
	if end := f.AOff + (f.K-1)*f.AStride + f.R*f.C; end > gpu.Numel(f.A.Shape()) || f.AOff < 0 || f.AStride < 0 {
		panic(fmt.Sprintf("adapt: %s: A factors end at element %d of a %v tensor", op, end, f.A.Shape()))
	}
	if end := f.BOff + (f.K-1)*f.BStride + f.V*f.R; end > gpu.Numel(f.B.Shape()) || f.BOff < 0 || f.BStride < 0 {
		panic(fmt.Sprintf("adapt: %s: B factors end at element %d of a %v tensor", op, end, f.B.Shape()))
	}
}
