package adapt

import (
	"github.com/chameleon-llm/chameleon/gpu"
)

// The backward ops of the adaptation: what training a hyper-network, a
// static LoRA or per-domain experts needs beyond the backend's matmul
// backward. Gradients are written, not accumulated.

// maxGradRows bounds the rows of one LowRankBackward call: each
// invocation of lowrank_grad_a/b loops over one cluster's rows, and
// lavapipe stops a loop at 65,535 iterations.
const maxGradRows = 65535

// ClusterOrder sorts rows by cluster for the gradient kernels: order lists
// the rows of cluster 0, then 1, ..., and cluster k's rows are
// order[offsets[k]:offsets[k+1]]. Rows whose cluster is outside [0, k)
// are left out. cluster nil means every one of m rows is in cluster 0.
func ClusterOrder(cluster []int32, m, k int) (order, offsets []int32) {
	offsets = make([]int32, k+1)
	at := func(r int) int {
		if cluster == nil {
			return 0
		}
		return int(cluster[r])
	}
	for r := 0; r < m; r++ {
		if c := at(r); c >= 0 && c < k {
			offsets[c+1]++
		}
	}
	for c := 0; c < k; c++ {
		offsets[c+1] += offsets[c]
	}
	order = make([]int32, offsets[k])
	next := append([]int32(nil), offsets[:k]...)
	for r := 0; r < m; r++ {
		if c := at(r); c >= 0 && c < k {
			order[next[c]] = int32(r)
			next[c]++
		}
	}
	return order, offsets
}

// oneCluster reports whether every row is in the same cluster c in [0, k)
// (cluster nil: all in 0), the case of every training batch (one cluster
// per batch) and of static LoRA.
func oneCluster(cluster []int32, m, k int) (int, bool) {
	if cluster == nil {
		return 0, m > 0
	}
	if m == 0 || cluster[0] < 0 || int(cluster[0]) >= k {
		return 0, false
	}
	for _, c := range cluster {
		if c != cluster[0] {
			return 0, false
		}
	}
	return int(cluster[0]), true
}

// copyRange dispatches copy_range: dst[dstOff+i] = src[srcOff+i], i < n.
func copyRange(w *gpu.WebGPU, dst, src gpu.Tensor, n, dstOff, srcOff int) {
	gx, gy := w.Grid1(ceilDiv(n, 256))
	w.Dispatch("copy_range", []gpu.Tensor{src}, []gpu.Tensor{dst}, gpu.Meta{n, srcOff, dstOff}, gx, gy, 1)
}
