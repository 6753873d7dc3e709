package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// The gated basis: a hyper adapter whose network generates, per cluster k,
// not a low-rank pair of its own but R gates g_k on the components of one
// static pair (A (R, C), B (V, R)) that every cluster shares:
//
//	logits += alpha * B diag(1 + g_k) A h
//
// At g = 0 it is the static LoRA (B, A); the gates let each cluster weigh
// the shared directions differently. The update is applied as per-cluster
// factors A_k = diag(1 + g_k) A with the one B shared (Factors with
// BStride 0), so Logits, LowRankU and the caches take it unchanged;
// GateFactors materialises A_k and GateBackward is the training backward
// of the gates and of A (B's is LowRankBackward's with every row in one
// cluster).

// checkGateFactors validates GateFactors' operands (panics on a mismatch)
// and returns K, R, C.
func checkGateFactors(dst, a, g gpu.Tensor) (int, int, int) {
	k, r := rows(g)
	gpu.CheckShape("GateFactors", "g", g, gpu.F32, k, r)
	ds := dst.Shape()
	if len(ds) != 3 || ds[0] != k || ds[1] != r {
		panic(fmt.Sprintf("adapt: GateFactors: dst %v, want (%d, %d, C) for gates %v", ds, k, r, g.Shape()))
	}
	c := ds[2]
	gpu.CheckShape("GateFactors", "dst", dst, gpu.F32, k, r, c)
	if gpu.Numel(a.Shape()) != r*c || a.DType() != gpu.F32 {
		panic(fmt.Sprintf("adapt: GateFactors: basis A %v %v, want %d x %d f32 values", a.DType(), a.Shape(), r, c))
	}
	return k, r, c
}

// checkGateBackward validates GateBackward's operands (panics on a
// mismatch) and returns M, K, R, C.
func checkGateBackward(dA, dg, du, u, h, g gpu.Tensor, cluster []int32) (int, int, int, int) {
	k, r := rows(g)
	gpu.CheckShape("GateBackward", "g", g, gpu.F32, k, r)
	gpu.CheckShape("GateBackward", "dg", dg, gpu.F32, k, r)
	m, c := rows(h)
	gpu.CheckShape("GateBackward", "h", h, gpu.F32, m, c)
	gpu.CheckShape("GateBackward", "du", du, gpu.F32, m, r)
	gpu.CheckShape("GateBackward", "u", u, gpu.F32, m, r)
	if gpu.Numel(dA.Shape()) != r*c || dA.DType() != gpu.F32 {
		panic(fmt.Sprintf("adapt: GateBackward: dA %v %v, want %d x %d f32 values", dA.DType(), dA.Shape(), r, c))
	}
	if cluster != nil && len(cluster) != m {
		panic(fmt.Sprintf("adapt: GateBackward: %d cluster ids for %d rows", len(cluster), m))
	}
	return m, k, r, c
}

// RefGateFactors: dst[k, j, i] = a[j, i] * (1 + g[k, j]).
func RefGateFactors(dst, a, g []float32, k, r, c int) {
	for kk := range k {
		for j := range r {
			s := 1 + g[kk*r+j]
			for i := range c {
				dst[(kk*r+j)*c+i] = a[j*c+i] * s
			}
		}
	}
}

// RefGateBackward writes the gradients of the gated basis's A and gates:
// dA[j, i] = alpha Σ_m (1 + g[c_m, j]) du[m, j] h[m, i] over the rows with
// a cluster in [0, K), and dg[k, j] = Σ_{m in k} du[m, j] u[m, j], where
// du = Bᵀ dlogits per row and u = alpha A h (ungated). cluster nil: every
// row in cluster 0.
func RefGateBackward(dA, dg, du, u, h, g []float32, cluster []int32, k, r, c int, alpha float32) {
	m := len(h) / c
	ga := make([]float64, r*c)
	gg := make([]float64, k*r)
	for row := range m {
		cl, ok := clusterOf(cluster, row, k)
		if !ok {
			continue
		}
		for j := range r {
			d := float64(du[row*r+j])
			gg[cl*r+j] += d * float64(u[row*r+j])
			s := d * float64(1+g[cl*r+j])
			for i, x := range h[row*c : (row+1)*c] {
				ga[j*c+i] += s * float64(x)
			}
		}
	}
	for i, v := range ga {
		dA[i] = alpha * float32(v)
	}
	for i, v := range gg {
		dg[i] = float32(v)
	}
}

// GateFactors implements Ops with the plain-Go reference.
func (o *RefOps) GateFactors(dst, a, g gpu.Tensor) {
	k, r, c := checkGateFactors(dst, a, g)
	RefGateFactors(o.rf(dst), o.rf(a), o.rf(g), k, r, c)
}

// GateBackward implements Ops with the plain-Go reference.
func (o *RefOps) GateBackward(dA, dg, du, u, h, g gpu.Tensor, cluster []int32, alpha float32) error {
	_, k, r, c := checkGateBackward(dA, dg, du, u, h, g, cluster)
	RefGateBackward(o.rf(dA), o.rf(dg), o.rf(du), o.rf(u), o.rf(h), o.rf(g), cluster, k, r, c, alpha)
	return nil
}

// GateFactors runs gate_rows over the K clusters' copies of A.
func (o *WebGPUOps) GateFactors(dst, a, g gpu.Tensor) {
	k, r, c := checkGateFactors(dst, a, g)
	w := o.WebGPU
	gx, gy := w.Grid1(ceilDiv(k*r*c, 64))
	// cluster is not read (has_cluster 0); g stands in for its binding.
	w.Dispatch("gate_rows", []gpu.Tensor{a, g, g}, []gpu.Tensor{dst}, gpu.Meta{k, r, c, k, 0, 0}, gx, gy, 1)
}

// GateBackward runs gate_rows (du scaled by each row's gates), the
// one-cluster lowrank_grad_a over every gated row (dA) and gate_grad (dg).
// It returns an error if a temporary cannot be allocated or M exceeds one
// call's rows.
func (o *WebGPUOps) GateBackward(dA, dg, du, u, h, g gpu.Tensor, cluster []int32, alpha float32) error {
	m, k, r, c := checkGateBackward(dA, dg, du, u, h, g, cluster)
	if m > maxGradRows {
		return fmt.Errorf("adapt: GateBackward: %d rows, at most %d per call", m, maxGradRows)
	}
	w := o.WebGPU
	var tmp []gpu.Tensor
	defer func() { freeAll(w, tmp) }()
	up := func(v []int32) (gpu.Tensor, error) {
		if len(v) == 0 {
			v = []int32{0}
		}
		t, err := w.Alloc(gpu.I32, len(v))
		if err != nil {
			return nil, err
		}
		tmp = append(tmp, t)
		return t, w.Write(t, v)
	}
	cl := cluster
	if cl == nil {
		cl = make([]int32, m)
	}
	order, offsets := ClusterOrder(cl, m, k)
	all := []int32{0, offsets[k]} // every gated row as one cluster, in order
	var ts [5]gpu.Tensor
	var err error
	for i, v := range [][]int32{cl, order, offsets, all} {
		if ts[i], err = up(v); err != nil {
			return fmt.Errorf("adapt: GateBackward: %w", err)
		}
	}
	if ts[4], err = w.Alloc(gpu.F32, m, r); err != nil {
		return fmt.Errorf("adapt: GateBackward: %w", err)
	}
	tmp = append(tmp, ts[4])
	clT, orderT, offT, allT, dus := ts[0], ts[1], ts[2], ts[3], ts[4]
	gx, gy := w.Grid1(ceilDiv(m*r, 64))
	w.Dispatch("gate_rows", []gpu.Tensor{du, g, clT}, []gpu.Tensor{dus}, gpu.Meta{m, r, 1, k, 1, 1}, gx, gy, 1)
	gx, gy = w.Grid1(ceilDiv(r*c, 64))
	w.Dispatch("lowrank_grad_a", []gpu.Tensor{dus, h, orderT, allT}, []gpu.Tensor{dA},
		gpu.Meta{c, r, 1, 0, r * c, alpha}, gx, gy, 1)
	gx, gy = w.Grid1(ceilDiv(k*r, 64))
	w.Dispatch("gate_grad", []gpu.Tensor{du, u, orderT, offT}, []gpu.Tensor{dg}, gpu.Meta{r, k}, gx, gy, 1)
	return nil
}
