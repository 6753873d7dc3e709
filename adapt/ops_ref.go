package adapt

import (
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// RefOps runs the adaptation ops as their plain-Go references (ref.go) on
// the reference backend: the ground truth of the conformance tests and
// the fallback without a GPU.
type RefOps struct {
	B *ref.Backend
}

// Backend is the backend the ops run on.
func (o *RefOps) Backend() gpu.Backend { return o.B }

// LowRankU implements Ops with the plain-Go reference.
func (o *RefOps) LowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	checkLowRankU(u, h, f, cluster)
	RefLowRankU(rf(u), rf(h), rf(f.A), ri(cluster), f.Layout, alpha)
}

// AddLowRank implements Ops with the plain-Go reference.
func (o *RefOps) AddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	checkAddLowRank(dst, u, f, cluster)
	RefAddLowRank(rf(dst), rf(u), rf(f.B), ri(cluster), f.Layout)
	return nil
}

// AddLowRankT implements Ops with the plain-Go reference.
func (o *RefOps) AddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	checkAddLowRankT(dst, du, f, cluster)
	RefAddLowRankT(rf(dst), rf(du), rf(f.A), ri(cluster), f.Layout, alpha)
}

// ReLU implements Ops with the plain-Go reference.
func (o *RefOps) ReLU(dst, x, mask gpu.Tensor) {
	checkReLU(dst, x, mask)
	RefReLU(rf(dst), rf(x), rf(mask))
}

// LogitsVariant implements Ops with the plain-Go reference.
func (o *RefOps) LogitsVariant(m int, w gpu.Tensor) string {
	return "reference"
}

// Logits implements Ops with the plain-Go reference.
func (o *RefOps) Logits(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) error {
	logitsDims(dst, h, w, bias, f, cluster)
	RefLogits(rf(dst), rf(h), rf(w), rf(bias), rf(f.A), rf(f.B), ri(cluster), f.Layout, alpha)
	return nil
}

// ReLUBackward implements Ops with the plain-Go reference.
func (o *RefOps) ReLUBackward(dx, dy, x, mask gpu.Tensor) {
	checkReLUBackward(dx, dy, x, mask)
	RefReLUBackward(rf(dx), rf(dy), rf(x), rf(mask))
}

// LowRankBackward implements Ops with the plain-Go reference.
func (o *RefOps) LowRankBackward(dF Factors, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	return o.LowRankBackwardInput(dF, nil, dlogits, h, u, f, cluster, alpha)
}

// LowRankBackwardInput implements Ops with the plain-Go reference.
func (o *RefOps) LowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	checkLowRankBackwardInput(dF, duOut, dlogits, h, u, f, cluster)
	RefLowRankBackward(rf(dF.A), rf(dF.B), rf(dlogits), rf(h), rf(u), rf(f.B), cluster, f.Layout, dF.Layout, alpha)
	if duOut != nil {
		refLowRankDU(rf(duOut), rf(dlogits), rf(f.B), cluster, f.Layout)
	}
	return nil
}
