package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// WebGPUOps runs the adaptation ops as WGSL kernels on a WebGPU device.
type WebGPUOps struct {
	*gpu.WebGPU
	// Variant selects Logits's kernels: VariantAuto, VariantFused or
	// VariantSeparate.
	Variant string
	// Update selects LowRankU's and AddLowRank's kernels: UpdateAuto,
	// UpdateTiled or UpdatePlain (ops_update.go).
	Update string
	// SeparateExpand runs SiteMatMul as MatMul then AddLowRank even where
	// a fused kernel exists (ops_site.go): the fallback, kept for A/B
	// benchmarks and tests.
	SeparateExpand bool
}

// Backend is the device the ops run on.
func (o *WebGPUOps) Backend() gpu.Backend { return o.WebGPU }

// AddLowRankT: dst(M,C) += alpha * A_cᵀ du(M,R) per row, c = cluster[m]
// (nil: 0); rows whose cluster is outside [0, K) are left unchanged: the
// input gradient of an update y += alpha B_c (A_c x), given du = B_cᵀ dy
// (LowRankBackwardInput returns it). dst is updated in place.
func (o *WebGPUOps) AddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	m, c := checkAddLowRankT(dst, du, f, cluster)
	w := o.WebGPU
	cl, has := orDefault(cluster, du)
	gx, gy := w.Grid1(ceilDiv(m*c, 64))
	w.Dispatch("lowrank_add_t", []gpu.Tensor{du, cl, f.A}, []gpu.Tensor{dst},
		gpu.Meta{m, c, f.R, f.K, f.AOff, f.AStride, has, alpha}, gx, gy, 1)
}

// ReLU: dst = max(x, 0) * mask elementwise, the hyper-network's activation
// with dropout folded in: mask (same shape) holds 0 for a dropped unit and
// 1/(1-p) for a kept one; nil mask is inference (no dropout).
func (o *WebGPUOps) ReLU(dst, x, mask gpu.Tensor) {
	s := checkReLU(dst, x, mask)
	w := o.WebGPU
	n := gpu.Numel(s)
	mk, has := orDefault(mask, x)
	gx, gy := w.Grid1(ceilDiv(n, 256))
	w.Dispatch("relu_mask", []gpu.Tensor{x, mk}, []gpu.Tensor{dst}, gpu.Meta{n, has}, gx, gy, 1)
}

// SequenceSums runs seq_sums, an invocation per (sequence, column).
func (o *WebGPUOps) SequenceSums(dst, rows, lengths gpu.Tensor) {
	b, t, c := checkSequenceSums(dst, rows, lengths)
	if b*c == 0 {
		return
	}
	w := o.WebGPU
	gx, gy := w.Grid1(ceilDiv(b*c, 64))
	w.Dispatch("seq_sums", []gpu.Tensor{rows, lengths}, []gpu.Tensor{dst}, gpu.Meta{b, t, c}, gx, gy, 1)
}

// CrossEntropyPair runs crossentropy_pair, a workgroup per row (its
// 8-lane copy where the backend's RowWG is 8, as on CPU adapters).
func (o *WebGPUOps) CrossEntropyPair(base, adapted, z, d, targets gpu.Tensor) error {
	m, v := checkCrossEntropyPair(base, adapted, z, d, targets)
	w := o.WebGPU
	if storageBytes(z) > w.Limits.MaxStorageBufferBindingSize {
		return fmt.Errorf("adapt: CrossEntropyPair: %d x %d logits exceed one storage binding (%d bytes)", m, v, w.Limits.MaxStorageBufferBindingSize)
	}
	if m == 0 {
		return nil
	}
	gx, gy := w.Grid1(m)
	w.Dispatch(w.RowKernel("crossentropy_pair"), []gpu.Tensor{z, d, targets}, []gpu.Tensor{base, adapted}, gpu.Meta{m, v}, gx, gy, 1)
	return nil
}

// LogitsVariant is the variant Logits runs for M rows with weights w:
// the fused kernel when the adapter's matmul family for M rows is the
// register-blocked one (CPU adapters, M > 2) and w fits one storage
// binding; else the backend's MatMul (mat-vec for M <= 2, workgroup tiles
// on GPUs, chunked weights) followed by lowrank_add. Ops.Variant overrides
// it, except that a w too large to bind is always separate.
func (o *WebGPUOps) LogitsVariant(m int, w gpu.Tensor) string {
	g := o.WebGPU
	if storageBytes(w) > g.Limits.MaxStorageBufferBindingSize {
		return VariantSeparate
	}
	switch o.Variant {
	case VariantFused, VariantSeparate:
		return o.Variant
	case VariantAuto:
		if gpu.MatMulFamily(g.MatMulVariant, m) == "reg" {
			return VariantFused
		}
		return VariantSeparate
	}
	panic(fmt.Sprintf("adapt: unknown Logits variant %q", o.Variant))
}

// Logits: dst(M,V) = h(M,C) · w(V,C)ᵀ + bias(V) + alpha * B_c (A_c h) per
// row, c = cluster[m] (cluster (M) I32, or nil for cluster 0 on every row;
// rows whose cluster is outside [0, K) get the plain logits). w is F32 or
// F16, bias F32 or nil; h and dst may have leading dims.
//
// It returns an error when dst, h or a factor tensor is larger than one
// storage binding of the device (dst of M x V f32 over 128 MiB, M > 667
// for V = 50257: call it on fewer rows at a time), or when the Flush
// between slices of a long update on a CPU adapter fails; other device
// errors surface at the next Flush.
func (o *WebGPUOps) Logits(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) error {
	m, c, v := logitsDims(dst, h, w, bias, f, cluster)
	g := o.WebGPU
	if m == 0 || v == 0 {
		return nil
	}
	lim := g.Limits.MaxStorageBufferBindingSize
	for _, t := range []struct {
		what string
		x    gpu.Tensor
	}{{"logits", dst}, {"h", h}, {"factor A", f.A}, {"factor B", f.B}} {
		if b := storageBytes(t.x); b > lim {
			return fmt.Errorf("adapt: Logits: %s %v is %d bytes, over the device's %d-byte storage binding: "+
				"run at most %d rows at a time", t.what, t.x.Shape(), b, lim, int(lim/uint64(4*max(v, c))))
		}
	}
	u, err := g.Alloc(gpu.F32, m, f.R)
	if err != nil {
		return fmt.Errorf("adapt: Logits: %w", err)
	}
	defer g.Free(u)
	o.LowRankU(u, h, f, cluster, alpha)
	if o.LogitsVariant(m, w) == VariantSeparate {
		g.MatMul(dst, h, w, bias)
		return o.AddLowRank(dst, u, f, cluster)
	}
	kern := fusedKernels[w.DType()]
	kw := c
	if w.DType() == gpu.F16 {
		kw = (c + 1) / 2
	}
	bs, hasBias := orDefault(bias, h)
	cl, hasCluster := orDefault(cluster, u)
	tilesN := ceilDiv(v, kern.bn)
	total := tilesN * ceilDiv(m, kern.bm)
	step := total
	if g.Info.Type == "cpu" {
		perTile := 2 * kern.bm * kern.bn * (c + f.R)
		step = max(1, min(total, cpuSubmitFlops/perTile))
	}
	for t0 := 0; t0 < total; t0 += step {
		n := min(step, total-t0)
		gx, gy := g.Grid1(n)
		g.Dispatch(kern.name, []gpu.Tensor{h, w, bs, u, cl, f.B}, []gpu.Tensor{dst},
			gpu.Meta{m, c, v, hasBias, tilesN, kw, t0, f.R, f.K, f.BOff, f.BStride, hasCluster}, gx, gy, 1)
		if n < total {
			if err := g.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReLUBackward is the backward of ReLU (y = max(x, 0) * mask): dx = dy *
// mask where x > 0, else 0. mask nil: no dropout.
func (o *WebGPUOps) ReLUBackward(dx, dy, x, mask gpu.Tensor) {
	s := checkReLUBackward(dx, dy, x, mask)
	w := o.WebGPU
	n := gpu.Numel(s)
	mk, has := orDefault(mask, x)
	gx, gy := w.Grid1(ceilDiv(n, 256))
	w.Dispatch("relu_mask_backward", []gpu.Tensor{dy, x, mk}, []gpu.Tensor{dx}, gpu.Meta{n, has}, gx, gy, 1)
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
func (o *WebGPUOps) LowRankBackward(dF Factors, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	return o.LowRankBackwardInput(dF, nil, dlogits, h, u, f, cluster, alpha)
}

// LowRankBackwardInput is LowRankBackward that also writes du (M, R) =
// B_cᵀ dy per row (zero for rows without an update), what AddLowRankT
// turns into the input gradient when the update sits inside the decoder;
// du may be nil (not needed).
func (o *WebGPUOps) LowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error {
	m, _ := checkLowRankBackwardInput(dF, duOut, dlogits, h, u, f, cluster)
	w := o.WebGPU
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
	sc := gpu.Scratch{B: w}
	defer sc.Free()
	up := func(v []int32) (gpu.Tensor, error) {
		t, err := sc.Alloc(gpu.I32, max(len(v), 1))
		if err != nil {
			return nil, err
		}
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
		if du, err = sc.Alloc(gpu.F32, m, f.R); err != nil {
			return fmt.Errorf("adapt: LowRankBackward: %w", err)
		}
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

// lowRankBackwardOne is LowRankBackward when every row is in cluster c:
// dB_c = dlogitsᵀ u and du = dlogits B_c are one matmul backward, which the
// backend's register-blocked or tiled kernels run far faster than the
// per-element gradient kernels (B_c is copied out of, and dB_c into, the
// factor tensors); dA_c comes from lowrank_grad_a. Every other cluster's
// gradient is zero.
func (o *WebGPUOps) lowRankBackwardOne(w *gpu.WebGPU, c int, dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, alpha float32) error {
	m, _ := rows(h)
	sc := gpu.Scratch{B: w}
	defer sc.Free()
	alloc := sc.Alloc
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

// CacheMix runs cache_mix: one invocation per element of dst.
func (o *WebGPUOps) CacheMix(dst, lp, own, pool, prior, rowParams gpu.Tensor, beta float32) {
	m, v := checkCacheMix(dst, lp, own, pool, prior, rowParams)
	w := o.WebGPU
	gx, gy := w.Grid1(ceilDiv(m*v, 256))
	w.Dispatch("cache_mix", []gpu.Tensor{lp, own, pool, prior, rowParams}, []gpu.Tensor{dst}, gpu.Meta{m, v, beta}, gx, gy, 1)
}
