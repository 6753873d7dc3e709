package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// Logits variants (Ops.Variant).
const (
	// VariantAuto picks per adapter and shape (see Ops.LogitsVariant).
	VariantAuto = ""
	// VariantFused runs the base matmul and the low-rank update in one
	// kernel (lowrank_matmul_f32/f16), after lowrank_u.
	VariantFused = "fused"
	// VariantSeparate runs the backend's MatMul and then adds the update
	// into the logits (lowrank_add), after lowrank_u.
	VariantSeparate = "separate"
)

// cpuSubmitFlops bounds one submit's work on CPU adapters, as gpu.MatMul
// does (wgpu gives up on a queue that has not drained after a few seconds):
// long dispatches are cut into slices with a Flush after each.
const cpuSubmitFlops = 1 << 27

// Fused kernels and their register blocks (rows x columns per workgroup);
// they must match BM and BN in the WGSL.
var fusedKernels = map[gpu.DType]struct {
	name   string
	bm, bn int
}{
	gpu.F32: {"lowrank_matmul_f32", 16, 128},
	gpu.F16: {"lowrank_matmul_f16", 8, 128},
}

// Ops runs the adaptation ops on a backend: the WGSL kernels on
// *gpu.WebGPU, the plain-Go references (ref.go) on *ref.Backend. Other
// backends panic. Like gpu.Backend's ops, these record work that becomes
// visible at the next Flush or read, never modify their inputs, and panic
// on shape or dtype mismatches.
type Ops struct {
	B gpu.Backend
	// Variant selects Logits's kernels on the WebGPU backend: VariantAuto,
	// VariantFused or VariantSeparate. The reference ignores it.
	Variant string
}

// New returns the ops on backend b with automatic variant selection.
func New(b gpu.Backend) *Ops { return &Ops{B: b} }

func (o *Ops) webgpu() (*gpu.WebGPU, bool) {
	switch b := o.B.(type) {
	case *gpu.WebGPU:
		return b, true
	case *ref.Backend:
		return nil, false
	}
	panic(fmt.Sprintf("adapt: backend %T has no adaptation kernels (want *gpu.WebGPU or *ref.Backend)", o.B))
}

// host data of reference tensors.
func rf(t gpu.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.(*ref.Tensor).F
}

func ri(t gpu.Tensor) []int32 {
	if t == nil {
		return nil
	}
	return t.(*ref.Tensor).I
}

// rows returns (M, C) of x viewed as rows over its last dim.
func rows(x gpu.Tensor) (int, int) {
	s := x.Shape()
	if len(s) == 0 {
		return 1, 1
	}
	return gpu.Numel(s[:len(s)-1]), s[len(s)-1]
}

// storageBytes is a tensor's size on the GPU (F16 rows are padded to an
// even length and packed in u32 words).
func storageBytes(t gpu.Tensor) uint64 {
	r, c := rows(t)
	if t.DType() == gpu.F16 {
		return uint64(r) * uint64((c+1)/2) * 4
	}
	return uint64(gpu.Numel(t.Shape())) * 4
}

// checkCluster panics unless cluster is nil or an I32 tensor of m elements.
func checkCluster(op string, cluster gpu.Tensor, m int) {
	if cluster != nil {
		gpu.CheckShape(op, "cluster", cluster, gpu.I32, m)
	}
}

// orDefault returns t, or def when t is nil (a binding a kernel ignores).
func orDefault(t, def gpu.Tensor) (gpu.Tensor, int) {
	if t == nil {
		return def, 0
	}
	return t, 1
}

// LowRankU: u(M,R) = alpha * A_c h(M,C) per row, c = cluster[m]; cluster
// (M) I32, or nil for cluster 0 on every row. Rows whose cluster is outside
// [0, K) get zeros. h may have leading dims (M is their product).
func (o *Ops) LowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	f.check("LowRankU")
	m, c := rows(h)
	if c != f.C {
		panic(fmt.Sprintf("adapt: LowRankU: h %v has width %d, factors have C=%d", h.Shape(), c, f.C))
	}
	gpu.CheckShape("LowRankU", "h", h, gpu.F32, h.Shape()...)
	gpu.CheckShape("LowRankU", "u", u, gpu.F32, m, f.R)
	checkCluster("LowRankU", cluster, m)
	w, ok := o.webgpu()
	if !ok {
		RefLowRankU(rf(u), rf(h), rf(f.A), ri(cluster), f.Layout, alpha)
		return
	}
	cl, has := orDefault(cluster, h)
	gx, gy := w.Grid1(ceilDiv(m*f.R, 64))
	w.Dispatch("lowrank_u", []gpu.Tensor{h, f.A, cl}, []gpu.Tensor{u},
		gpu.Meta{m, f.C, f.R, f.K, f.AOff, f.AStride, has, alpha}, gx, gy, 1)
}

// AddLowRank: dst(M,V) += B_c u(M,R) per row, c = cluster[m] (nil: 0);
// rows whose cluster is outside [0, K) are left unchanged. dst is updated
// in place (it is the op's only output binding). On CPU adapters long
// updates are submitted in slices of rows; the error of such a Flush is
// returned.
func (o *Ops) AddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) error {
	f.check("AddLowRank")
	m, v := rows(dst)
	if v != f.V {
		panic(fmt.Sprintf("adapt: AddLowRank: dst %v has %d columns, factors have V=%d", dst.Shape(), v, f.V))
	}
	gpu.CheckShape("AddLowRank", "dst", dst, gpu.F32, dst.Shape()...)
	gpu.CheckShape("AddLowRank", "u", u, gpu.F32, m, f.R)
	checkCluster("AddLowRank", cluster, m)
	w, ok := o.webgpu()
	if !ok {
		RefAddLowRank(rf(dst), rf(u), rf(f.B), ri(cluster), f.Layout)
		return nil
	}
	cl, has := orDefault(cluster, u)
	step := m
	if w.Info.Type == "cpu" {
		// Each output costs R loads of B and R/4 of u: budget it at an
		// eighth of a matmul slice's FLOPs.
		step = max(1, min(m, cpuSubmitFlops/8/(2*v*f.R)))
	}
	quads := ceilDiv(v, 4)
	for r0 := 0; r0 < m; r0 += step {
		n := min(step, m-r0)
		gx, gy := w.Grid1(ceilDiv(n*quads, 64))
		w.Dispatch("lowrank_add", []gpu.Tensor{u, cl, f.B}, []gpu.Tensor{dst},
			gpu.Meta{n, v, f.R, f.K, f.BOff, f.BStride, has, r0}, gx, gy, 1)
		if n < m {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddLowRankT: dst(M,C) += alpha * A_cᵀ du(M,R) per row, c = cluster[m]
// (nil: 0); rows whose cluster is outside [0, K) are left unchanged: the
// input gradient of an update y += alpha B_c (A_c x), given du = B_cᵀ dy
// (LowRankBackwardInput returns it). dst is updated in place.
func (o *Ops) AddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) {
	f.check("AddLowRankT")
	m, c := rows(dst)
	if c != f.C {
		panic(fmt.Sprintf("adapt: AddLowRankT: dst %v has %d columns, factors have C=%d", dst.Shape(), c, f.C))
	}
	gpu.CheckShape("AddLowRankT", "dst", dst, gpu.F32, dst.Shape()...)
	gpu.CheckShape("AddLowRankT", "du", du, gpu.F32, m, f.R)
	checkCluster("AddLowRankT", cluster, m)
	w, ok := o.webgpu()
	if !ok {
		RefAddLowRankT(rf(dst), rf(du), rf(f.A), ri(cluster), f.Layout, alpha)
		return
	}
	cl, has := orDefault(cluster, du)
	gx, gy := w.Grid1(ceilDiv(m*c, 64))
	w.Dispatch("lowrank_add_t", []gpu.Tensor{du, cl, f.A}, []gpu.Tensor{dst},
		gpu.Meta{m, c, f.R, f.K, f.AOff, f.AStride, has, alpha}, gx, gy, 1)
}

// ReLU: dst = max(x, 0) * mask elementwise, the hyper-network's activation
// with dropout folded in: mask (same shape) holds 0 for a dropped unit and
// 1/(1-p) for a kept one; nil mask is inference (no dropout).
func (o *Ops) ReLU(dst, x, mask gpu.Tensor) {
	s := x.Shape()
	gpu.CheckShape("ReLU", "x", x, gpu.F32, s...)
	gpu.CheckShape("ReLU", "dst", dst, gpu.F32, s...)
	if mask != nil {
		gpu.CheckShape("ReLU", "mask", mask, gpu.F32, s...)
	}
	w, ok := o.webgpu()
	if !ok {
		RefReLU(rf(dst), rf(x), rf(mask))
		return
	}
	n := gpu.Numel(s)
	mk, has := orDefault(mask, x)
	gx, gy := w.Grid1(ceilDiv(n, 256))
	w.Dispatch("relu_mask", []gpu.Tensor{x, mk}, []gpu.Tensor{dst}, gpu.Meta{n, has}, gx, gy, 1)
}

// logitsDims checks Logits's operands and returns (M, C, V).
func logitsDims(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int, int) {
	m, c, v := gpu.MatMulDims(dst, h, w, bias)
	f.check("Logits")
	if f.C != c || f.V != v {
		panic(fmt.Sprintf("adapt: Logits: factors for C=%d V=%d applied to h %v and w %v", f.C, f.V, h.Shape(), w.Shape()))
	}
	checkCluster("Logits", cluster, m)
	return m, c, v
}

// LogitsVariant is the variant Logits runs for M rows with weights w:
// the fused kernel when the adapter's matmul family for M rows is the
// register-blocked one (CPU adapters, M > 2) and w fits one storage
// binding; else the backend's MatMul (mat-vec for M <= 2, workgroup tiles
// on GPUs, chunked weights) followed by lowrank_add. Ops.Variant overrides
// it, except that a w too large to bind is always separate.
func (o *Ops) LogitsVariant(m int, w gpu.Tensor) string {
	g, ok := o.webgpu()
	if !ok {
		return "reference"
	}
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
func (o *Ops) Logits(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) error {
	m, c, v := logitsDims(dst, h, w, bias, f, cluster)
	g, ok := o.webgpu()
	if !ok {
		RefLogits(rf(dst), rf(h), rf(w), rf(bias), rf(f.A), rf(f.B), ri(cluster), f.Layout, alpha)
		return nil
	}
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

func ceilDiv(a, b int) int { return (a + b - 1) / b }
