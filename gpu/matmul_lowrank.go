package gpu

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/wgsl"
)

// A matmul with a per-row low-rank update as its epilogue: a decoder
// site's y = x·wᵀ + bias and the expand of its update, y[m] += B_c u[m]
// (package adapt's SGMV), in one kernel that writes y once, where the
// separate expand (lowrank_add_tiled) reads and writes y again. The
// kernels are twins of the texture and register matmuls (CPU adapters,
// wgsl.TexKernels' "lr", matmul_reg_*_lr), of the quantized texture
// mat-vecs (wgsl.QTexKernels' LR ones), of the tile matmul (GPUs,
// matmul_tile_*_lr) and of the mat-vecs of decode (matmul_coop_*_lr on
// GPUs, matmul_gemv_*_lr), all at f32, f16 and the quantized formats.
// Each stores
// what its matmul and lowrank_add_tiled store, bit for bit (the update is
// summed apart, from zero in rank order, and added to the biased output
// last), so the fused and the separate path, and BatchInvariant, agree
// exactly.

// LowRankUpdate is the update MatMulLowRank adds: row m of the output
// gets B_c u[m] (c = Cluster[m]; nothing where c lies outside [0, K)).
type LowRankUpdate struct {
	U       Tensor // (M, R) f32: the shrink's output, alpha already applied
	Cluster Tensor // (M) i32, or nil: every row in cluster 0
	// B holds the K factors: B_k[n, j] = B[BOff + k*BStride + n*R + j],
	// f32, any shape (a packed hyper-network output, or (K, N, R)).
	B                   Tensor
	R, K, BOff, BStride int
}

// texLRKernels are the texture kernels with the low-rank epilogue, by
// weight dtype, smallest block first.
var texLRKernels = func() map[DType][]texMatKernel {
	out := map[DType][]texMatKernel{}
	for _, k := range wgsl.TexKernels {
		if k.Epi != "lr" {
			continue
		}
		dt := F32
		if k.F16 {
			dt = F16
		}
		out[dt] = append(out[dt], texMatKernel{k.Name, k.RM, k.RN * k.WG})
	}
	return out
}()

// checkLowRankUpdate panics unless lr fits a matmul of m rows and n
// columns.
func checkLowRankUpdate(lr LowRankUpdate, m, n int) {
	if lr.U == nil || lr.B == nil || lr.R <= 0 || lr.K <= 0 || lr.BOff < 0 || lr.BStride < 0 {
		panic(fmt.Sprintf("gpu: MatMulLowRank: update needs u, B, R > 0 and K > 0 (R=%d K=%d b_off=%d b_stride=%d)", lr.R, lr.K, lr.BOff, lr.BStride))
	}
	CheckShape("MatMulLowRank", "u", lr.U, F32, m, lr.R)
	if lr.Cluster != nil {
		CheckShape("MatMulLowRank", "cluster", lr.Cluster, I32, m)
	}
	CheckShape("MatMulLowRank", "B", lr.B, F32, lr.B.Shape()...)
	if need := lr.BOff + (lr.K-1)*lr.BStride + n*lr.R; Numel(lr.B.Shape()) < need {
		panic(fmt.Sprintf("gpu: MatMulLowRank: B %v holds %d floats, the %d factors of (%d, %d) need %d", lr.B.Shape(), Numel(lr.B.Shape()), lr.K, n, lr.R, need))
	}
}

// siteLRKernels are MatMulLowRank's texture kernels by weight dtype: the
// f32 and f16 texture matmuls' twins and the quantized texture mat-vecs'
// (whose prefill path runs the f32 ones on the unpacked weights).
var siteLRKernels = func() map[DType][]texMatKernel {
	out := map[DType][]texMatKernel{}
	for dt, ks := range texLRKernels {
		out[dt] = ks
	}
	for dt, ks := range qtexLRKernels {
		out[dt] = ks
	}
	return out
}()

// MatMulLowRank: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N) + B_c u per row, in
// the matmul's own dispatches: the kernel MatMul would run for these
// operands (the same family choice: MatMulVariant, M, BatchInvariant,
// coopFits, the texture fallbacks), replaced by its _lr twin. Twins exist
// for the texture matmuls (f32, f16: matmul_tex*_lr), the quantized
// texture mat-vecs (matmul_qtex*_lr; with more rows than they take, the
// f32 texture twins on the unpacked weights), and the register, tile and
// mat-vec families at every weight dtype (matmul_reg_*_lr: the browser;
// matmul_tile_*_lr: GPUs, M > MatMulGemvMaxM; matmul_coop_*_lr,
// matmul_gemv_*_lr: decode on GPUs, M <= MatMulGemvMaxM). Where x, dst, u
// or B do not fit one storage binding (MatMul then cuts x and dst into
// runs of rows, which the twins do not take), it
// records nothing and returns false: the caller then runs MatMul and the
// separate expand. It panics on a shape or dtype mismatch (MatMul's
// checks, and u (M, R), cluster (M), B holding K factors).
func (w *WebGPU) MatMulLowRank(dst, x, wt, bias Tensor, lr LowRankUpdate) bool {
	m, k, n := MatMulDims(dst, x, wt, bias)
	checkLowRankUpdate(lr, m, n)
	if m == 0 || n == 0 {
		return true
	}
	rows := w.matRowChunks(x, dst, m, k, n)
	if len(rows) != 1 {
		return false
	}
	lim := w.Limits.MaxStorageBufferBindingSize
	if uint64(Numel(lr.B.Shape()))*4 > lim || uint64(m*lr.R)*4 > lim {
		return false
	}
	cl, hasCl := lr.U, 0
	if lr.Cluster != nil {
		cl, hasCl = lr.Cluster, 1
	}
	in := []binding{w.bind(lr.U), w.bind(cl), w.bind(lr.B)}
	meta := Meta{lr.R, lr.K, lr.BOff, lr.BStride, hasCl}
	dt := wt.DType()
	fm := m
	if w.BatchInvariant {
		fm = max(m, MatMulGemvMaxM+1)
	}
	// MatMul's family choice, step by step.
	fam := MatMulFamily(w.MatMulVariant, fm)
	if fam == "tex" && dt.Quantized() {
		if w.matMulQuantTexEp(dst, x, wt, bias, m, k, n, &texEpilogue{kernels: siteLRKernels, in: in, meta: meta}) {
			return true
		}
		fam = MatMulFamily(MatMulReg, fm)
	}
	if fam == "tex" {
		if w.matMulTexEp(dst, x, wt, bias, m, k, n, &texEpilogue{kernels: siteLRKernels, in: in, meta: meta}) {
			return true
		}
		fam = MatMulFamily(MatMulReg, fm)
	}
	if fam == "coop" && !coopFits(k, dt) {
		fam = "gemv"
	}
	kern := matKernels[fam][dt]
	kw := k
	if dt == F16 {
		kw = (k + 1) / 2
	}
	if f, ok := dt.Quant(); ok {
		kw = quantRowWords(f, k)
	}
	w.matMulRows(kern.name+"_lr", kern, m, k, n, kw, rows[0].x, rows[0].dst, wt, bias, &matExtra{in: in, meta: meta})
	return true
}
