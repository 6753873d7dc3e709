package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// The backward ops of the adaptation: what training a hyper-network, a
// static LoRA or per-domain experts needs beyond the backend's matmul
// backward. Gradients are written, not accumulated.

// maxGradRows bounds the rows of one LowRankBackward call: each
// invocation of lowrank_grad_a/b loops over one cluster's rows, and
// lavapipe stops a loop at 65,535 iterations.
const maxGradRows = 65535

// ReLUBackward is the backward of ReLU (y = max(x, 0) * mask): dx = dy *
// mask where x > 0, else 0. mask nil: no dropout.
func (o *Ops) ReLUBackward(dx, dy, x, mask gpu.Tensor) {
	s := x.Shape()
	for _, t := range []struct {
		n string
		t gpu.Tensor
	}{{"dx", dx}, {"dy", dy}, {"mask", mask}} {
		if t.t != nil {
			gpu.CheckShape("ReLUBackward", t.n, t.t, gpu.F32, s...)
		}
	}
	w, ok := o.webgpu()
	if !ok {
		RefReLUBackward(rf(dx), rf(dy), rf(x), rf(mask))
		return
	}
	n := gpu.Numel(s)
	mk, has := orDefault(mask, x)
	gx, gy := w.Grid1(ceilDiv(n, 256))
	w.Dispatch("relu_mask_backward", []gpu.Tensor{dy, x, mk}, []gpu.Tensor{dx}, gpu.Meta{n, has}, gx, gy, 1)
}

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

// LowRankBackward is the backward of the per-row low-rank update
// logits[m] += B_c u[m], u[m] = alpha * A_c h[m] (c = cluster[m]; nil
// cluster: every row in cluster 0; rows outside [0, K) had no update):
//
//	dB_c = Σ_{m in c} dlogits[m] u[m]ᵀ          (V, R)
//	du[m] = B_cᵀ dlogits[m]                       (R)
//	dA_c = alpha Σ_{m in c} du[m] h[m]ᵀ          (R, C)
//
// given dlogits (M, V), h (M, C) and u (M, R) from LowRankU. The gradients
// are WRITTEN into dF, which has f's shape (K, R, C, V) and may be packed
// (a hyper-network output's gradient, A and B parts of one tensor). It
// returns an error if a temporary cannot be allocated or M exceeds one
// call's rows.
func (o *Ops) LowRankBackward(dF Factors, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	return o.LowRankBackwardInput(dF, nil, dlogits, h, u, f, cluster, alpha)
}

// LowRankBackwardInput is LowRankBackward that also writes du (M, R) =
// B_cᵀ dy per row (zero for rows without an update), what AddLowRankT
// turns into the input gradient when the update sits inside the decoder;
// du may be nil (not needed).
func (o *Ops) LowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	f.check("LowRankBackward")
	dF.check("LowRankBackward")
	if dF.K != f.K || dF.R != f.R || dF.C != f.C || dF.V != f.V {
		panic(fmt.Sprintf("adapt: LowRankBackward: gradient factors %+v do not match factors %+v", dF.Layout, f.Layout))
	}
	m, c := rows(h)
	if c != f.C {
		panic(fmt.Sprintf("adapt: LowRankBackward: h %v has width %d, factors have C=%d", h.Shape(), c, f.C))
	}
	if dm, dv := rows(dlogits); dm != m || dv != f.V {
		panic(fmt.Sprintf("adapt: LowRankBackward: dlogits %v, want %d rows of %d", dlogits.Shape(), m, f.V))
	}
	gpu.CheckShape("LowRankBackward", "dlogits", dlogits, gpu.F32, dlogits.Shape()...)
	gpu.CheckShape("LowRankBackward", "u", u, gpu.F32, m, f.R)
	if cluster != nil && len(cluster) != m {
		panic(fmt.Sprintf("adapt: LowRankBackward: %d cluster ids for %d rows", len(cluster), m))
	}
	if duOut != nil {
		gpu.CheckShape("LowRankBackward", "du", duOut, gpu.F32, m, f.R)
	}
	w, ok := o.webgpu()
	if !ok {
		RefLowRankBackward(rf(dF.A), rf(dF.B), rf(dlogits), rf(h), rf(u), rf(f.B), cluster, f.Layout, dF.Layout, alpha)
		if duOut != nil {
			refLowRankDU(rf(duOut), rf(dlogits), rf(f.B), cluster, f.Layout)
		}
		return nil
	}
	if m > maxGradRows {
		return fmt.Errorf("adapt: LowRankBackward: %d rows, at most %d per call", m, maxGradRows)
	}
	if f.V > maxGradRows {
		return fmt.Errorf("adapt: LowRankBackward: vocabulary %d, at most %d", f.V, maxGradRows)
	}
	if c, ok := oneCluster(cluster, m, f.K); ok {
		return o.lowRankBackwardOne(w, c, dF, duOut, dlogits, h, u, f, alpha)
	}
	order, offsets := ClusterOrder(cluster, m, f.K)
	var tmp []gpu.Tensor
	defer func() {
		for _, t := range tmp {
			w.Free(t)
		}
	}()
	up := func(v []int32) (gpu.Tensor, error) {
		t, err := w.Alloc(gpu.I32, max(len(v), 1))
		if err != nil {
			return nil, err
		}
		tmp = append(tmp, t)
		if len(v) == 0 {
			v = []int32{0}
		}
		return t, w.Write(t, v)
	}
	orderT, err := up(order)
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	offT, err := up(offsets)
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	clT, hasCl := gpu.Tensor(h), 0
	if cluster != nil {
		if clT, err = up(cluster); err != nil {
			return fmt.Errorf("adapt: LowRankBackward: %w", err)
		}
		hasCl = 1
	}
	du := duOut
	if du == nil {
		if du, err = w.Alloc(gpu.F32, m, f.R); err != nil {
			return fmt.Errorf("adapt: LowRankBackward: %w", err)
		}
		tmp = append(tmp, du)
	}
	gx, gy := w.Grid1(ceilDiv(f.K*f.V*f.R, 64))
	w.Dispatch("lowrank_grad_b", []gpu.Tensor{dlogits, u, orderT, offT}, []gpu.Tensor{dF.B},
		gpu.Meta{f.V, f.R, f.K, dF.BOff, dF.BStride}, gx, gy, 1)
	gx, gy = w.Grid1(ceilDiv(m*f.R, 64))
	w.Dispatch("lowrank_grad_u", []gpu.Tensor{dlogits, f.B, clT}, []gpu.Tensor{du},
		gpu.Meta{m, f.V, f.R, f.K, f.BOff, f.BStride, hasCl}, gx, gy, 1)
	gx, gy = w.Grid1(ceilDiv(f.K*f.R*f.C, 64))
	w.Dispatch("lowrank_grad_a", []gpu.Tensor{du, h, orderT, offT}, []gpu.Tensor{dF.A},
		gpu.Meta{f.C, f.R, f.K, dF.AOff, dF.AStride, alpha}, gx, gy, 1)
	return nil
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

// lowRankBackwardOne is LowRankBackward when every row is in cluster c:
// dB_c = dlogitsᵀ u and du = dlogits B_c are one matmul backward, which the
// backend's register-blocked or tiled kernels run far faster than the
// per-element gradient kernels (B_c is copied out of, and dB_c into, the
// factor tensors); dA_c comes from lowrank_grad_a. Every other cluster's
// gradient is zero.
func (o *Ops) lowRankBackwardOne(w *gpu.WebGPU, c int, dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, alpha float32) error {
	m, _ := rows(h)
	var tmp []gpu.Tensor
	defer func() {
		for _, t := range tmp {
			w.Free(t)
		}
	}()
	alloc := func(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
		t, err := w.Alloc(dt, shape...)
		if err == nil {
			tmp = append(tmp, t)
		}
		return t, err
	}
	bc, err := alloc(gpu.F32, f.V, f.R)
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	dbc, err := alloc(gpu.F32, f.V, f.R)
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	du := duOut
	if du == nil {
		if du, err = alloc(gpu.F32, m, f.R); err != nil {
			return fmt.Errorf("adapt: LowRankBackward: %w", err)
		}
	}
	copyRange(w, bc, f.B, f.V*f.R, 0, f.BOff+c*f.BStride)
	w.Zero(dbc)
	w.MatMulBackward(du, dbc, nil, dlogits, u, bc)
	if f.K > 1 {
		w.Zero(dF.A)
		if dF.B != dF.A {
			w.Zero(dF.B)
		}
	}
	copyRange(w, dF.B, dbc, f.V*f.R, dF.BOff+c*dF.BStride, 0)
	order, offsets := make([]int32, m), []int32{0, int32(m)} // every row, one cluster
	for i := range order {
		order[i] = int32(i)
	}
	orderT, err := alloc(gpu.I32, len(order))
	if err == nil {
		err = w.Write(orderT, order)
	}
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	offT, err := alloc(gpu.I32, len(offsets))
	if err == nil {
		err = w.Write(offT, offsets)
	}
	if err != nil {
		return fmt.Errorf("adapt: LowRankBackward: %w", err)
	}
	// dA for cluster c only (K = 1 from its offset; the others were zeroed).
	gx, gy := w.Grid1(ceilDiv(f.R*f.C, 64))
	w.Dispatch("lowrank_grad_a", []gpu.Tensor{du, h, orderT, offT}, []gpu.Tensor{dF.A},
		gpu.Meta{f.C, f.R, 1, dF.AOff + c*dF.AStride, dF.AStride, alpha}, gx, gy, 1)
	return nil
}
