package gpu

import "fmt"

// MatMul kernel variants (WebGPU.MatMulVariant). The default is chosen per
// adapter by defaultMatMulVariant.
const (
	// MatMulReg: register-blocked kernels without workgroup memory or
	// barriers, for CPU adapters (lavapipe, SwiftShader), where the
	// invocations of a workgroup run as SIMD lanes of one thread. The
	// mat-vec kernel serves M <= MatMulGemvMaxM.
	MatMulReg = "reg"
	// MatMulTile: workgroup-memory tiles with barriers, for GPUs. The
	// mat-vec kernel serves M <= MatMulGemvMaxM.
	MatMulTile = "tile"
	// MatMulGemv forces the mat-vec kernel at every M.
	MatMulGemv = "gemv"
	// MatMulRegOnly and MatMulTileOnly force their kernel at every M
	// (no mat-vec switch): for tests and benchmarks.
	MatMulRegOnly  = "reg-only"
	MatMulTileOnly = "tile-only"
)

// MatMulVariants lists every value MatMulVariant accepts.
var MatMulVariants = []string{MatMulReg, MatMulTile, MatMulGemv, MatMulRegOnly, MatMulTileOnly}

// MatMulGemvMaxM is the largest M that the reg and tile variants send to the
// mat-vec kernel.
const MatMulGemvMaxM = 8

func defaultMatMulVariant(d *Device) string {
	if d.Info.Type == "cpu" {
		return MatMulReg
	}
	return MatMulTile
}

// matKernel describes one kernel family: its WGSL files and output block.
type matKernel struct {
	f32, f16 string // kernel names
	bm, bn   int    // output rows and columns per workgroup
}

var matKernels = map[string]matKernel{
	"reg":  {"matmul_reg_f32", "matmul_reg_f16", 32, 64},
	"tile": {"matmul_tile_f32", "matmul_tile_f16", 64, 64},
	"gemv": {"matmul_gemv_f32", "matmul_gemv_f16", 8, 64},
}

// MatMulDims checks MatMul's operands and returns (M, K, N): x(M,K) and
// dst(M,N) with any leading dims (M is their product), w(N,K) F32 or F16,
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
	if dt := w.DType(); dt != F32 && dt != F16 {
		panic(fmt.Sprintf("gpu: MatMul: w has dtype %v, want f32 or f16", dt))
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
func (w *WebGPU) matMulFamily(m int) string {
	switch w.MatMulVariant {
	case MatMulReg, "":
		if m <= MatMulGemvMaxM {
			return "gemv"
		}
		return "reg"
	case MatMulTile:
		if m <= MatMulGemvMaxM {
			return "gemv"
		}
		return "tile"
	case MatMulGemv:
		return "gemv"
	case MatMulRegOnly:
		return "reg"
	case MatMulTileOnly:
		return "tile"
	}
	if _, ok := matKernels[w.MatMulVariant]; ok {
		return w.MatMulVariant
	}
	panic(fmt.Sprintf("gpu: MatMul: unknown MatMulVariant %q (want one of %v)", w.MatMulVariant, MatMulVariants))
}

// MatMul: dst(M,N) = x(M,K) · w(N,K)ᵀ + bias(N).
//
// Every kernel family binds x, w, bias, dst and a Meta of
// {M, K, N, n_base, n_count, has_bias, tiles_n, kw}: the dispatch covers
// the n_count rows of w starting at row n_base (one chunk of w when w is
// larger than a storage binding), tiles_n workgroup tiles along N, kw is
// w's row stride in u32 words (K for f32, ceil(K/2) for packed f16). A nil
// bias binds x in its place with has_bias = 0.
func (w *WebGPU) MatMul(dst, x, wt, bias Tensor) {
	m, k, n := MatMulDims(dst, x, wt, bias)
	if m == 0 || n == 0 {
		return
	}
	kern := matKernels[w.matMulFamily(m)]
	name, kw := kern.f32, k
	if wt.DType() == F16 {
		name, kw = kern.f16, (k+1)/2
	}
	bb, hasBias := w.bind(x), 0
	if bias != nil {
		bb, hasBias = w.bind(bias), 1
	}
	tilesM := ceilDiv(m, kern.bm)
	for _, ch := range w.rowChunks("MatMul", wt) {
		tilesN := ceilDiv(ch.n, kern.bn)
		gx, gy := w.grid1(tilesN * tilesM)
		w.dispatch(name, 3, 1, []binding{w.bind(x), ch.b, bb, w.bind(dst)},
			Meta{m, k, n, ch.start, ch.n, hasBias, tilesN, kw}, gx, gy, 1)
	}
}
