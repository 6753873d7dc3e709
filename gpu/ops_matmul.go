package gpu

import "fmt"

// MatMul kernel variants (WebGPU.MatMulVariant). The default is chosen per
// adapter by defaultMatMulVariant.
const (
	// MatMulReg: register-blocked kernels without workgroup memory or
	// barriers, for CPU adapters (lavapipe, SwiftShader), where the
	// invocations of a workgroup run as SIMD lanes of one thread. The
	// mat-vec kernel serves M <= MatMulRegGemvMaxM.
	MatMulReg = "reg"
	// MatMulTex: x and w read from textures (gpu/texture.go), for CPU
	// adapters, where a texel fetch is far cheaper than a storage load;
	// falls back to MatMulReg's kernels when w does not fit a texture.
	MatMulTex = "tex"
	// MatMulTile: workgroup-memory tiles with barriers, for GPUs. The
	// cooperative mat-vec kernel (MatMulCoop's) serves M <= MatMulGemvMaxM.
	MatMulTile = "tile"
	// MatMulCoop forces the cooperative mat-vec kernel at every M: a
	// workgroup splits K among its invocations (coalesced reads of w on a
	// GPU) and sums in workgroup memory. It needs whole 16-byte words per
	// row of w (K % 4 == 0 for f32 weights, K % 8 == 0 for f16); other K
	// run the gemv kernel.
	MatMulCoop = "coop"
	// MatMulGemv forces the mat-vec kernel at every M.
	MatMulGemv = "gemv"
	// MatMulRegOnly and MatMulTileOnly force their kernel at every M
	// (no mat-vec switch): for tests and benchmarks.
	MatMulRegOnly  = "reg-only"
	MatMulTileOnly = "tile-only"
)

// MatMulVariants lists every value MatMulVariant accepts.
var MatMulVariants = []string{MatMulReg, MatMulTile, MatMulGemv, MatMulRegOnly, MatMulTileOnly, MatMulTex, MatMulCoop}

// MatMulGemvMaxM is the largest M that the tile variant sends to the
// cooperative mat-vec kernel; MatMulRegGemvMaxM the same for the reg
// variant and the gemv kernel: on
// lavapipe the mat-vec kernel wins at M = 1 but the register kernel already
// wins at M = 8 (BENCHMARKS.md), as it reads w once for all rows.
const (
	MatMulGemvMaxM    = 8
	MatMulRegGemvMaxM = 2
)

func defaultMatMulVariant(d *Device) string {
	if d.Info.Type == "cpu" {
		return cpuMatMulVariant
	}
	return MatMulTile
}

// matKernel is one kernel (a WGSL file) and its output block per workgroup.
type matKernel struct {
	name   string
	bm, bn int // output rows and columns per workgroup
}

// matKernels maps a family and weight dtype to its kernel. The blocks
// must match the kernels' BM and BN. The f16 register kernel has half the
// rows of the f32 one: lavapipe's compiler crashes on the larger f16 body.
var matKernels = map[string]map[DType]matKernel{
	"reg": {
		F32:  {"matmul_reg_f32", 16, 128},
		F16:  {"matmul_reg_f16", 8, 128},
		Q8_0: {"matmul_reg_q8_0", 8, 64},
		Q4_0: {"matmul_reg_q4_0", 8, 64},
		Q4_K: {"matmul_reg_q4_k", 8, 64},
	},
	"tile": {
		F32:  {"matmul_tile_f32", 64, 64},
		F16:  {"matmul_tile_f16", 64, 64},
		Q8_0: {"matmul_tile_q8_0", 64, 64},
		Q4_0: {"matmul_tile_q4_0", 64, 64},
		Q4_K: {"matmul_tile_q4_k", 64, 64},
	},
	"gemv": {
		F32:  {"matmul_gemv_f32", 8, 256},
		F16:  {"matmul_gemv_f16", 8, 256},
		Q8_0: {"matmul_gemv_q8_0", 8, 256},
		Q4_0: {"matmul_gemv_q4_0", 8, 256},
		Q4_K: {"matmul_gemv_q4_k", 8, 256},
	},
	"coop": {
		F32:  {"matmul_coop_f32", 8, 4},
		F16:  {"matmul_coop_f16", 8, 4},
		Q8_0: {"matmul_coop_q8_0", 8, 4},
		Q4_0: {"matmul_coop_q4_0", 8, 4},
		Q4_K: {"matmul_coop_q4_k", 8, 4},
	},
}

// coopFits reports whether the cooperative mat-vec kernel takes w's rows:
// it reads them as whole vec4 words (4 f32 or 8 packed f16 weights).
func coopFits(k int, dt DType) bool {
	if dt.Quantized() {
		return true // whole 32-weight blocks
	}
	if dt == F16 {
		return k%8 == 0
	}
	return k%4 == 0
}

// MatMulDims checks MatMul's operands and returns (M, K, N): x(M,K) and
// dst(M,N) with any leading dims (M is their product), w(N,K) F32, F16 or
// quantized,
// bias F32 (N) or nil. It panics with a "gpu: MatMul: " message on any
// shape or dtype mismatch.
func MatMulDims(dst, x, w, bias Tensor) (m, k, n int) {
	if x == nil || w == nil || dst == nil {
		panic("gpu: MatMul: x, w and dst must not be nil")
	}
	ws := w.Shape()
	if len(ws) != 2 {
		panic(fmt.Sprintf("gpu: MatMul: w has shape %v, want (N, K)", ws))
	}
	if dt := w.DType(); dt != F32 && dt != F16 && !dt.Quantized() {
		panic(fmt.Sprintf("gpu: MatMul: w has dtype %v, want f32, f16 or quantized", dt))
	}
	n, k = ws[0], ws[1]
	xs := x.Shape()
	if len(xs) == 0 || xs[len(xs)-1] != k {
		panic(fmt.Sprintf("gpu: MatMul: x has shape %v, want (..., %d) to match w %v", xs, k, ws))
	}
	CheckShape("MatMul", "x", x, F32, xs...)
	m = Numel(xs[:len(xs)-1])
	ds := dst.Shape()
	if len(ds) == 0 || ds[len(ds)-1] != n || Numel(ds[:len(ds)-1]) != m {
		panic(fmt.Sprintf("gpu: MatMul: dst has shape %v, want %d rows of %d (x %v, w %v)", ds, m, n, xs, ws))
	}
	CheckShape("MatMul", "dst", dst, F32, ds...)
	if bias != nil {
		CheckShape("MatMul", "bias", bias, F32, n)
	}
	return m, k, n
}

// matMulFamily picks the kernel family for M rows under the current variant.
func (w *WebGPU) matMulFamily(m int) string { return MatMulFamily(w.MatMulVariant, m) }

// MatMulFamily is the kernel family ("reg", "tile", "gemv", "coop" or
// "tex") that variant runs for M rows (a "coop" MatMul whose K the kernel
// cannot take runs "gemv", see coopFits).
func MatMulFamily(variant string, m int) string {
	switch variant {
	case MatMulReg, "":
		if m <= MatMulRegGemvMaxM {
			return "gemv"
		}
		return "reg"
	case MatMulTile:
		if m <= MatMulGemvMaxM {
			return "coop"
		}
		return "tile"
	case MatMulCoop:
		return "coop"
	case MatMulGemv:
		return "gemv"
	case MatMulRegOnly:
		return "reg"
	case MatMulTileOnly:
		return "tile"
	case MatMulTex:
		return "tex"
	}
	panic(fmt.Sprintf("gpu: MatMul: unknown MatMulVariant %q (want one of %v)", variant, MatMulVariants))
}

// cpuSubmitFlops bounds the work of one submit on CPU adapters. wgpu gives
// up on a queue that has not drained after a few seconds (and the process
// dies), and a lavapipe matmul runs at a few GFLOP/s, so a large matmul is
// cut into dispatches of at most this many FLOPs with a flush after each.
const cpuSubmitFlops = 1 << 27

// tileStep is how many of a tiled kernel's total tiles, perTile FLOPs each,
// one dispatch covers: all of them on a GPU, at most cpuSubmitFlops' worth
// (at least one) on a CPU adapter.
func (w *WebGPU) tileStep(total int, perTile float64) int {
	if w.Info.Type != "cpu" {
		return total
	}
	return max(1, min(total, int(cpuSubmitFlops/perTile)))
}

// MatMul: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N).
//
// Quantized w (Q8_0, Q4_0, Q4_K) runs kernels of the same families that
// dequantize each weight in registers; where the variant says "tex" it
// takes the texture mat-vecs (decode) or dequantizes into a texture
// (prefill), else the register family (quant_tex.go).
//
// Every kernel family binds x, w, bias, dst and a Meta of
// {M, K, N, n_base, n_count, has_bias, tiles_n, kw, tile_base}: the
// dispatch covers the n_count rows of w starting at row n_base (one chunk
// of w when w is larger than a storage binding), tiles_n workgroup tiles
// along N, kw is w's row stride in u32 words (K for f32, ceil(K/2) for
// packed f16, quantRowWords for quantized w), and workgroup i computes tile tile_base + i. A nil bias
// binds x in its place with has_bias = 0.
func (w *WebGPU) MatMul(dst, x, wt, bias Tensor) {
	m, k, n := MatMulDims(dst, x, wt, bias)
	if m == 0 || n == 0 {
		return
	}
	fm := m // the M that picks the family
	if w.BatchInvariant {
		fm = max(m, MatMulGemvMaxM+1)
	}
	fam := MatMulFamily(w.MatMulVariant, fm)
	if fam == "tex" && wt.DType().Quantized() {
		// Quantized blocks: the texture mat-vecs or unpacking, else the
		// register kernels reading them from storage (quant_tex.go).
		if w.matMulQuantTex(dst, x, wt, bias, m, k, n) {
			return
		}
		fam = MatMulFamily(MatMulReg, fm)
	}
	if fam == "tex" {
		if w.matMulTex(dst, x, wt, bias, m, k, n) {
			return
		}
		fam = MatMulFamily(MatMulReg, fm)
	}
	if fam == "coop" && !coopFits(k, wt.DType()) {
		fam = "gemv"
	}
	kern := matKernels[fam][wt.DType()]
	name, kw := kern.name, k
	if wt.DType() == F16 {
		kw = (k + 1) / 2
	}
	if f, ok := wt.DType().Quant(); ok {
		kw = quantRowWords(f, k)
	}
	for _, c := range w.matRowChunks(x, dst, m, k, n) {
		w.matMulRows(name, kern, c.rows, k, n, kw, c.x, c.dst, wt, bias, nil)
	}
}

// matExtra is what a fused variant of a matmul kernel binds beyond the
// plain kernel's: buffers read after bias, and the layer-norm epsilon
// (Meta's field after tile_base; unused by the plain kernels), then any
// further Meta fields.
type matExtra struct {
	in   []binding
	eps  float32
	meta Meta // Meta fields after eps
}

// matRows is a run of rows of a matmul's x (M,K) and dst (M,N) bound as
// one storage range each.
type matRows struct {
	rows   int
	x, dst binding
}

// matRowChunks splits the M rows of x and dst into runs that fit one
// storage binding (a (B*T, V) logits matrix easily does not): all of them
// in one run unless either is larger, else runs of a multiple of 64 rows
// so that every offset stays aligned.
func (w *WebGPU) matRowChunks(x, dst Tensor, m, k, n int) []matRows {
	xt, dt := w.t(x), w.t(dst)
	rowsPer := m
	if lim := w.Limits.MaxStorageBufferBindingSize; xt.bytes > lim || dt.bytes > lim {
		rowsPer = int(lim/uint64(4*max(k, n))) / 64 * 64
		if rowsPer == 0 {
			panic(fmt.Sprintf("gpu: MatMul: a row of %d or %d floats is too large to bind in aligned chunks", k, n))
		}
	}
	var out []matRows
	for r0 := 0; r0 < m; r0 += rowsPer {
		rm := min(rowsPer, m-r0)
		out = append(out, matRows{rm,
			binding{buf: xt.buf, offset: uint64(r0 * k * 4), size: uint64(max(rm*k, 1) * 4)},
			binding{buf: dt.buf, offset: uint64(r0 * n * 4), size: uint64(rm * n * 4)}})
	}
	return out
}

// matMulRows dispatches the matmul of rm rows bound as xb and db (and,
// for a fused variant, ex's inputs).
func (w *WebGPU) matMulRows(name string, kern matKernel, m, k, n, kw int, xb, db binding, wt, bias Tensor, ex *matExtra) {
	if ex == nil {
		ex = &matExtra{}
	}
	bb, hasBias := xb, 0
	if bias != nil {
		bb, hasBias = w.bind(bias), 1
	}
	tilesM := ceilDiv(m, kern.bm)
	// Tiles per dispatch: all of them, except on CPU adapters where a
	// dispatch must stay short (see cpuSubmitFlops).
	perTile := 2 * float64(kern.bm) * float64(kern.bn) * float64(max(k, 1))
	for _, ch := range w.rowChunks("MatMul", wt) {
		tilesN := ceilDiv(ch.n, kern.bn)
		total := tilesN * tilesM
		step := w.tileStep(total, perTile)
		for t0 := 0; t0 < total; t0 += step {
			cnt := min(step, total-t0)
			gx, gy := w.grid1(cnt)
			w.nextFlops = 2 * float64(m) * float64(k) * float64(ch.n) * float64(cnt) / float64(total)
			bs := append(append([]binding{xb, ch.b, bb}, ex.in...), db)
			w.dispatch(name, 3+len(ex.in), 1, bs,
				append(Meta{m, k, n, ch.start, ch.n, hasBias, tilesN, kw, t0, ex.eps}, ex.meta...), gx, gy, 1)
			if cnt < total {
				// A slice of a long matmul on a CPU adapter: submit it now.
				if err := w.flush(); err != nil {
					w.rec.fail(err)
				}
			}
		}
	}
}
