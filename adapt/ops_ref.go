package adapt

import (
	"github.com/chameleon-llm/chameleon/gpu"
)

// RefOps runs the adaptation ops as their plain-Go references (ref.go) on
// the host slices of a host backend's tensors (the reference backend):
// the ground truth of the conformance tests and the fallback without a
// GPU.
type RefOps struct {
	gpu.Host
}

// Backend is the backend the ops run on.
func (o *RefOps) Backend() gpu.Backend { return o.Host }

// rf is the host data of a float tensor, nil for a nil (absent) one.
func (o *RefOps) rf(t gpu.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return o.HostF32(t)
}

// ri is the host data of an I32 tensor, nil for a nil (absent) one.
func (o *RefOps) ri(t gpu.Tensor) []int32 {
	if t == nil {
		return nil
	}
	return o.HostI32(t)
}

// LowRankU implements Ops with the plain-Go reference.
func (o *RefOps) LowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	checkLowRankU(u, h, f, cluster)
	RefLowRankU(o.rf(u), o.rf(h), o.rf(f.A), o.ri(cluster), f.Layout, alpha)
}

// AddLowRank implements Ops with the plain-Go reference.
func (o *RefOps) AddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	checkAddLowRank(dst, u, f, cluster)
	RefAddLowRank(o.rf(dst), o.rf(u), o.rf(f.B), o.ri(cluster), f.Layout)
	return nil
}

// SiteMatMul implements Ops with the plain-Go references: the backend's
// MatMul, then AddLowRank.
func (o *RefOps) SiteMatMul(y, x, w, bias, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	checkSiteMatMul(y, x, w, bias, u, f, cluster)
	o.Host.MatMul(y, x, w, bias)
	return o.AddLowRank(y, u, f, cluster)
}

// AddLowRankT implements Ops with the plain-Go reference.
func (o *RefOps) AddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	checkAddLowRankT(dst, du, f, cluster)
	RefAddLowRankT(o.rf(dst), o.rf(du), o.rf(f.A), o.ri(cluster), f.Layout, alpha)
}

// ReLU implements Ops with the plain-Go reference.
func (o *RefOps) ReLU(dst, x, mask gpu.Tensor) {
	checkReLU(dst, x, mask)
	RefReLU(o.rf(dst), o.rf(x), o.rf(mask))
}

// SequenceSums implements Ops with the plain-Go reference.
func (o *RefOps) SequenceSums(dst, rows, lengths gpu.Tensor) {
	_, t, c := checkSequenceSums(dst, rows, lengths)
	RefSequenceSums(o.rf(dst), o.rf(rows), o.ri(lengths), t, c)
}

// CrossEntropyPair implements Ops with the plain-Go reference: the host
// backend's CrossEntropy of z, and of z + d formed by its Add (the f32 sum
// the kernel forms).
func (o *RefOps) CrossEntropyPair(base, adapted, z, d, targets gpu.Tensor) error {
	checkCrossEntropyPair(base, adapted, z, d, targets)
	zd, err := o.Host.Alloc(gpu.F32, z.Shape()...)
	if err != nil {
		return err
	}
	defer o.Host.Free(zd)
	o.Host.Add(zd, z, d)
	o.Host.CrossEntropy(base, z, targets)
	o.Host.CrossEntropy(adapted, zd, targets)
	return nil
}

// LogitsVariant implements Ops with the plain-Go reference.
func (o *RefOps) LogitsVariant(m int, w gpu.Tensor) string {
	return "reference"
}

// Logits implements Ops with the plain-Go reference.
func (o *RefOps) Logits(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) error {
	logitsDims(dst, h, w, bias, f, cluster)
	RefLogits(o.rf(dst), o.rf(h), o.rf(w), o.rf(bias), o.rf(f.A), o.rf(f.B), o.ri(cluster), f.Layout, alpha)
	return nil
}

// ReLUBackward implements Ops with the plain-Go reference.
func (o *RefOps) ReLUBackward(dx, dy, x, mask gpu.Tensor) {
	checkReLUBackward(dx, dy, x, mask)
	RefReLUBackward(o.rf(dx), o.rf(dy), o.rf(x), o.rf(mask))
}

// LowRankBackward implements Ops with the plain-Go reference.
func (o *RefOps) LowRankBackward(dF Factors, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	return o.LowRankBackwardInput(dF, nil, dlogits, h, u, f, cluster, alpha)
}

// LowRankBackwardInput implements Ops with the plain-Go reference.
func (o *RefOps) LowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	checkLowRankBackwardInput(dF, duOut, dlogits, h, u, f, cluster)
	RefLowRankBackward(o.rf(dF.A), o.rf(dF.B), o.rf(dlogits), o.rf(h), o.rf(u), o.rf(f.B), cluster, f.Layout, dF.Layout, alpha)
	if duOut != nil {
		refLowRankDU(o.rf(duOut), o.rf(dlogits), o.rf(f.B), cluster, f.Layout)
	}
	return nil
}

// CacheMix implements Ops with the plain-Go reference.
func (o *RefOps) CacheMix(dst, lp, own, pool, prior, rowParams gpu.Tensor, beta float32) {
	_, v := checkCacheMix(dst, lp, own, pool, prior, rowParams)
	RefCacheMix(o.rf(dst), o.rf(lp), o.rf(own), o.rf(pool), o.rf(prior), o.rf(rowParams), v, beta)
}
