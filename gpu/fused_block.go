package gpu

import "math"

// The fused block ops (Backend.FusesBlock): a decode step's layer norms
// as the prologue of the matmul that reads them, its residual adds as the
// epilogue of the projection that feeds them, and the attention half of a
// block (layer norm, qkv, KV store, attention) as one kernel. They are
// forms of the GPU decode family, the cooperative mat-vec (MatMulFamily
// "coop": a GPU's matmuls at M <= MatMulGemvMaxM), where a step is bound
// by its dispatches: the _ln, _ln_gelu and _res variants of matmul_coop
// and attention_ln_qkv (generated, wgsl/internal/gen). Elsewhere each op
// runs its parts. The plain-Go reference is the parts composed
// (gpu/ref/fused.go); conformance checks both (gpu/conformance/block.go).

// blockFusion reports whether the switches allow the fused block kernels:
// FuseEpilogues on, and neither Unfused nor BatchInvariant (the fused
// kernels give a row other bits than a many-row call's kernels).
func (w *WebGPU) blockFusion() bool {
	return w.FuseEpilogues && !w.Unfused && !w.BatchInvariant
}

// coopFused reports whether a matmul of m rows of K with weights of dt
// runs a fused matmul_coop variant.
func (w *WebGPU) coopFused(m, k int, dt DType) bool {
	return w.blockFusion() && (dt == F32 || dt == F16) && MatMulFamily(w.MatMulVariant, m) == "coop" && coopFits(k, dt)
}

// FusesBlock implements Backend: the fused block ops are one kernel each
// where MatMul would run the cooperative mat-vec of f32 or f16 weights.
func (w *WebGPU) FusesBlock(m int, wt Tensor) bool {
	s := wt.Shape()
	return len(s) == 2 && w.coopFused(m, s[1], wt.DType())
}

// matMulCoop records a fused matmul_coop variant (suffix "_ln",
// "_ln_gelu" or "_res") binding ex after bias, or returns false having
// recorded nothing when the operands are over one storage binding.
func (w *WebGPU) matMulCoop(suffix string, dst, x, wt, bias Tensor, m, k, n int, ex *matExtra) bool {
	rows := w.matRowChunks(x, dst, m, k, n)
	if len(rows) != 1 {
		return false
	}
	kern := matKernels["coop"][wt.DType()]
	kw := k
	if wt.DType() == F16 {
		kw = (k + 1) / 2
	}
	w.matMulRows(kern.name+suffix, kern, m, k, n, kw, rows[0].x, rows[0].dst, wt, bias, ex)
	return true
}

// MatMulAdd: dst(M,N) = res + (x · wᵀ + bias): matmul_coop_*_res where
// the block kernels are fused (coopFused), else MatMul into a scratch
// tensor and Add. Both give MatMul's sum plus res, bit for bit.
func (w *WebGPU) MatMulAdd(dst, x, wt, bias, res Tensor) {
	m, k, n := MatMulDims(dst, x, wt, bias)
	CheckShape("MatMulAdd", "res", res, F32, dst.Shape()...)
	if m == 0 || n == 0 {
		return
	}
	if w.coopFused(m, k, wt.DType()) && w.matMulCoop("_res", dst, x, wt, bias, m, k, n, &matExtra{in: []binding{w.bind(res)}}) {
		return
	}
	tmp, err := w.Alloc(F32, dst.Shape()...)
	if err != nil {
		w.rec.fail(&KernelError{"MatMulAdd", err})
		return
	}
	w.MatMul(tmp, x, wt, bias)
	w.Add(dst, res, tmp)
	w.Free(tmp)
}

// LayerNormMatMul: dst = [gelu](LayerNorm(x) · wᵀ + bias):
// matmul_coop_*_ln or _ln_gelu where the block kernels are fused, else
// LayerNorm into a scratch tensor and MatMul or MatMulGELU.
func (w *WebGPU) LayerNormMatMul(dst, x, gamma, beta, wt, bias Tensor, eps float32, gelu bool) {
	m, k, n := MatMulDims(dst, x, wt, bias)
	CheckShape("LayerNormMatMul", "gamma", gamma, F32, k)
	CheckShape("LayerNormMatMul", "beta", beta, F32, k)
	if m == 0 || n == 0 {
		return
	}
	suffix := "_ln"
	if gelu {
		suffix = "_ln_gelu"
	}
	ex := &matExtra{in: []binding{w.bind(gamma), w.bind(beta)}, eps: eps}
	if w.coopFused(m, k, wt.DType()) && w.matMulCoop(suffix, dst, x, wt, bias, m, k, n, ex) {
		return
	}
	if err := LayerNormMatMulParts(w, dst, x, gamma, beta, wt, bias, eps, gelu); err != nil {
		w.rec.fail(&KernelError{"LayerNormMatMul", err})
	}
}

// attnLNQKVBindings is attention_ln_qkv's number of storage bindings.
const attnLNQKVBindings = 10

// LayerNormAttention: a block's attention half. Decode (Tq = 1) with f32
// or f16 weights where the block kernels are fused runs
// attention_ln_qkv_*: one workgroup per (sequence, head) normalises its
// row, computes its head's query, key and value, stores the two and
// attends; the adapter must allow 10 storage bindings a stage, C <= 2048
// (f32: a multiple of 4, f16: of 8) and the operands must fit one binding
// each. Otherwise LayerNorm, MatMulKVStore and Attention through scratch
// tensors.
func (w *WebGPU) LayerNormAttention(dst Tensor, a NormAttention) {
	nb, tq, c, tmax, d := NormAttentionDims(dst, a)
	if d > maxHeadDim {
		panic("gpu: LayerNormAttention: head size over the kernels' maximum of 128")
	}
	if nb == 0 || tq == 0 || c == 0 {
		return
	}
	if w.lnAttentionFused(dst, a, nb, tq, c, tmax, d) {
		return
	}
	if err := LayerNormAttentionParts(w, dst, a); err != nil {
		w.rec.fail(&KernelError{"LayerNormAttention", err})
	}
}

// lnAttentionFused records LayerNormAttention as attention_ln_qkv, or
// returns false having recorded nothing.
func (w *WebGPU) lnAttentionFused(dst Tensor, a NormAttention, nb, tq, c, tmax, d int) bool {
	dt := a.W.DType()
	if !w.blockFusion() || tq != 1 || tmax == 0 || c > 2048 || w.Limits.MaxStorageBuffersPerStage < attnLNQKVBindings {
		return false
	}
	words := 0 // vec4 words a row of w
	switch {
	case dt == F32 && c%4 == 0:
		words = c / 4
	case dt == F16 && c%8 == 0:
		words = c / 8
	default:
		return false
	}
	if len(w.seqChunks("LayerNormAttention", a.KCache, a.VCache, nb)) != 1 || len(w.rowChunks("LayerNormAttention", a.W)) != 1 {
		return false
	}
	bias, hasBias := w.bind(a.X), 0
	if a.Bias != nil {
		bias, hasBias = w.bind(a.Bias), 1
	}
	gx, gy := w.grid1(nb * a.NHead)
	scale := float32(1 / math.Sqrt(float64(d)))
	w.dispatch("attention_ln_qkv_"+dt.String(), 7, 3,
		[]binding{w.bind(a.X), w.bind(a.Gamma), w.bind(a.Beta), w.bind(a.W), bias, w.bind(a.Start), w.bind(a.Qlen),
			w.bind(a.KCache), w.bind(a.VCache), w.bind(dst)},
		Meta{nb, c, tmax, a.NHead, d, scale, a.Eps, hasBias, words}, gx, gy, 1)
	return true
}
