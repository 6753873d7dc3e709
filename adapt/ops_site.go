package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// A decoder site's matmul with its update's expand in the epilogue
// (Ops.SiteMatMul): y = x·wᵀ + bias + B_c u per row, where u = alpha A_c x
// came from LowRankU. Separately, the expand (lowrank_add_tiled) reads and
// writes y once more after the matmul wrote it, the cost that remained of
// a site's update on lavapipe (BENCHMARKS.md, Updates inside the decoder).
// Fused, gpu.WebGPU.MatMulLowRank stores the same bits in the matmul's
// own dispatches: the texture kernels on CPU adapters, the register ones
// in the browser, the tile kernel and the decode mat-vecs on GPUs, at
// every weight type.

// checkSiteMatMul validates SiteMatMul's operands (panics on a mismatch)
// and returns M, V.
func checkSiteMatMul(y, x, w, bias, u gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int) {
	m, c, v := gpu.MatMulDims(y, x, w, bias)
	f.check("SiteMatMul")
	if f.C != c || f.V != v {
		panic(fmt.Sprintf("adapt: SiteMatMul: factors for C=%d V=%d applied to x %v and w %v", f.C, f.V, x.Shape(), w.Shape()))
	}
	gpu.CheckShape("SiteMatMul", "u", u, gpu.F32, m, f.R)
	checkCluster("SiteMatMul", cluster, m)
	return m, v
}

// SiteMatMul implements Ops: one matmul kernel with the expand as its
// epilogue where gpu.WebGPU.MatMulLowRank has one for the adapter's
// matmul family and w's dtype, unless SeparateExpand is set or the update
// kernels are the plain ones (UpdatePlain); else MatMul, then AddLowRank.
// Both store the same bits.
func (o *WebGPUOps) SiteMatMul(y, x, w, bias, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	checkSiteMatMul(y, x, w, bias, u, f, cluster)
	g := o.WebGPU
	if !o.SeparateExpand && o.expandKernel() != "lowrank_add" {
		lr := gpu.LowRankUpdate{U: u, Cluster: cluster, B: f.B, R: f.R, K: f.K, BOff: f.BOff, BStride: f.BStride}
		if g.MatMulLowRank(y, x, w, bias, lr) {
			return nil
		}
	}
	g.MatMul(y, x, w, bias)
	return o.AddLowRank(y, u, f, cluster)
}
