package adapt

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
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

// Ops are the adaptation ops added to the backend they run on (the
// op-extension pattern of package gpu): WebGPUOps runs the WGSL kernels on
// *gpu.WebGPU, RefOps their plain-Go references (ref.go) on a gpu.Host, New
// picks one, and the conformance tests (lowrank_test.go) run both on random
// inputs. Memory and base ops are the embedded backend's. Like
// gpu.Backend's ops, these record work that becomes visible at the next
// Flush or read, never modify their inputs, and panic on shape or dtype
// mismatches (the shared check* functions below, which both
// implementations call first).
type Ops interface {
	gpu.Backend
	// Backend is the embedded backend itself, as a plain gpu.Backend.
	Backend() gpu.Backend
	LowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32)
	AddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) error
	// SiteMatMul: y(M,V) = x(M,C) · w(V,C)ᵀ + bias(V), then y += B_c u(M,R)
	// per row (AddLowRank): a decoder site's matmul and the expand of its
	// update, one kernel where the backend has one (ops_site.go).
	SiteMatMul(y, x, w, bias, u gpu.Tensor, f Factors, cluster gpu.Tensor) error
	AddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32)
	ReLU(dst, x, mask gpu.Tensor)
	ReLUBackward(dx, dy, x, mask gpu.Tensor)
	LogitsVariant(m int, w gpu.Tensor) string
	Logits(dst, h, w, bias gpu.Tensor, f Factors, cluster gpu.Tensor, alpha float32) error
	LowRankBackward(dF Factors, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error
	LowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32, alpha float32) error
	// GateFactors and GateBackward are the gated basis's (ops_gate.go):
	// dst (K, R, C) = diag(1 + g_k) a for gates g (K, R) on a basis a
	// of R x C values, and the backward into a's and the gates'
	// gradients.
	GateFactors(dst, a, g gpu.Tensor)
	GateBackward(dA, dg, du, u, h, g gpu.Tensor, cluster []int32, alpha float32) error
	// CacheMix: the token cache's mixture (cache.go) over rows of
	// log-probabilities lp (M, V) into dst (M, V): own (S, V) and pool
	// (K, V) hold token counts, prior (V) the prior, rowParams (M, 6) per
	// row its own row, its pool row (negative: none), the two weights and
	// the two rows' totals (CacheRowParams builds them).
	CacheMix(dst, lp, own, pool, prior, rowParams gpu.Tensor, beta float32)
	// NeuralMix: the neural cache's mixture (ops_ncache.go), in place
	// over rows of log-probabilities dst (M, V): row m's unit query
	// h[m] / |h[m]| (h (M, C)) reads its own and pool ranges of keys
	// (Kn, C) unit rows with next tokens vals (Kn) I32, and may write
	// itself to a key slot; rowParams (M, 8) as NeuralRowParams packs
	// them, maxKeys the most keys of a row. It returns an error for C
	// over NeuralMaxC or more keys than the kernel's loops take.
	NeuralMix(dst, h, keys, vals, rowParams gpu.Tensor, maxKeys int) error
	// SequenceSums: dst (B, C) row b is the sum of rows (B, T, C)[b, t]
	// over t < lengths (B) I32 [b], clamped to [0, T], in order: a
	// prefill's per-prompt sums of its final hidden rows, so that a plan
	// reads back B x C values rather than every row.
	SequenceSums(dst, rows, lengths gpu.Tensor)
	// CrossEntropyPair: base (M) and adapted (M) are each row's
	// cross-entropy against targets (M) I32 under logits z (M, V) and
	// under z + d (d (M, V): an update's logits), from one read of both;
	// a negative target gives 0, one >= V NaN, as Backend.CrossEntropy.
	// It fails where z is larger than one storage binding.
	CrossEntropyPair(base, adapted, z, d, targets gpu.Tensor) error
}

// checkCrossEntropyPair validates CrossEntropyPair's operands (panics on
// a mismatch) and returns M, V.
func checkCrossEntropyPair(base, adapted, z, d, targets gpu.Tensor) (int, int) {
	s := z.Shape()
	if len(s) != 2 {
		panic(fmt.Sprintf("adapt: CrossEntropyPair: z has shape %v, want (M, V)", s))
	}
	m, v := s[0], s[1]
	gpu.CheckShape("CrossEntropyPair", "z", z, gpu.F32, m, v)
	gpu.CheckShape("CrossEntropyPair", "d", d, gpu.F32, m, v)
	gpu.CheckShape("CrossEntropyPair", "targets", targets, gpu.I32, m)
	gpu.CheckShape("CrossEntropyPair", "base", base, gpu.F32, m)
	gpu.CheckShape("CrossEntropyPair", "adapted", adapted, gpu.F32, m)
	return m, v
}

// checkSequenceSums validates SequenceSums's operands (panics on a
// mismatch) and returns B, T, C.
func checkSequenceSums(dst, rows, lengths gpu.Tensor) (int, int, int) {
	s := rows.Shape()
	if len(s) != 3 {
		panic(fmt.Sprintf("adapt: SequenceSums: rows has shape %v, want (B, T, C)", s))
	}
	b, t, c := s[0], s[1], s[2]
	gpu.CheckShape("SequenceSums", "rows", rows, gpu.F32, b, t, c)
	gpu.CheckShape("SequenceSums", "lengths", lengths, gpu.I32, b)
	gpu.CheckShape("SequenceSums", "dst", dst, gpu.F32, b, c)
	return b, t, c
}

// CacheRowParams packs CacheMix's per-row parameters: row m reads own
// counts row ownRow[m] and pool row poolRow[m] (negative: none) with the
// weights w[m] and the rows' totals.
func CacheRowParams(ownRow, poolRow []int, w []CacheWeights, ownTotal, poolTotal []float64) []float32 {
	out := make([]float32, 0, 6*len(ownRow))
	for m := range ownRow {
		out = append(out, float32(ownRow[m]), float32(poolRow[m]), float32(w[m].Own), float32(w[m].Pool),
			float32(ownTotal[m]), float32(poolTotal[m]))
	}
	return out
}

// checkCacheMix validates CacheMix's operands (panics on a mismatch) and
// returns M, V.
func checkCacheMix(dst, lp, own, pool, prior, rowParams gpu.Tensor) (int, int) {
	m, v := rows(lp)
	gpu.CheckShape("CacheMix", "lp", lp, gpu.F32, m, v)
	gpu.CheckShape("CacheMix", "dst", dst, gpu.F32, m, v)
	gpu.CheckShape("CacheMix", "prior", prior, gpu.F32, v)
	gpu.CheckShape("CacheMix", "rowParams", rowParams, gpu.F32, m, 6)
	for _, x := range []struct {
		n string
		t gpu.Tensor
	}{{"own", own}, {"pool", pool}} {
		s := x.t.Shape()
		if len(s) != 2 || s[1] != v || x.t.DType() != gpu.F32 {
			panic(fmt.Sprintf("adapt: CacheMix: %s is %v %v, want (rows, %d) f32", x.n, x.t.DType(), s, v))
		}
	}
	return m, v
}

// New returns the ops on backend b (WebGPU with automatic variant
// selection, or the reference on a host backend). It panics for any other
// backend: which backends exist is fixed at compile time.
func New(b gpu.Backend) Ops {
	ops, err := gpu.Select(b,
		func(w *gpu.WebGPU) Ops { return &WebGPUOps{WebGPU: w} },
		func(h gpu.Host) Ops { return &RefOps{h} })
	if err != nil {
		panic("adapt: no adaptation kernels: " + err.Error())
	}
	return ops
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

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// checkLowRankU validates LowRankU's operands (panics on a mismatch) and returns m, c.
func checkLowRankU(u, h gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int) {
	return checkLowRankOp("LowRankU", "h", h, "C", "u", u, f, cluster)
}

// checkAddLowRank validates AddLowRank's operands (panics on a mismatch) and returns m, v.
func checkAddLowRank(dst, u gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int) {
	return checkLowRankOp("AddLowRank", "dst", dst, "V", "u", u, f, cluster)
}

// checkAddLowRankT validates AddLowRankT's operands (panics on a mismatch) and returns m, c.
func checkAddLowRankT(dst, du gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int) {
	return checkLowRankOp("AddLowRankT", "dst", dst, "C", "du", du, f, cluster)
}

// checkLowRankOp validates the operands of low-rank op: x (xName), F32
// rows as wide as the factors' dim ("C" or "V"); r (rName), F32 (rows of
// x, R); the factors and the clusters. It panics on a mismatch and returns
// x's rows and width.
func checkLowRankOp(op, xName string, x gpu.Tensor, dim, rName string, r gpu.Tensor, f Factors, cluster gpu.Tensor) (int, int) {
	f.check(op)
	m, w := rows(x)
	want := f.C
	if dim == "V" {
		want = f.V
	}
	if w != want {
		panic(fmt.Sprintf("adapt: %s: %s %v has %d columns, factors have %s=%d", op, xName, x.Shape(), w, dim, want))
	}
	gpu.CheckShape(op, xName, x, gpu.F32, x.Shape()...)
	gpu.CheckShape(op, rName, r, gpu.F32, m, f.R)
	checkCluster(op, cluster, m)
	return m, w
}

// checkReLU validates ReLU's operands (panics on a mismatch) and returns s.
func checkReLU(dst, x, mask gpu.Tensor) []int {
	s := x.Shape()
	gpu.CheckShape("ReLU", "x", x, gpu.F32, s...)
	gpu.CheckShape("ReLU", "dst", dst, gpu.F32, s...)
	if mask != nil {
		gpu.CheckShape("ReLU", "mask", mask, gpu.F32, s...)
	}
	return s
}

// checkReLUBackward validates ReLUBackward's operands (panics on a mismatch) and returns s.
func checkReLUBackward(dx, dy, x, mask gpu.Tensor) []int {
	s := x.Shape()
	for _, t := range []struct {
		n string
		t gpu.Tensor
	}{{"dx", dx}, {"dy", dy}, {"mask", mask}} {
		if t.t != nil {
			gpu.CheckShape("ReLUBackward", t.n, t.t, gpu.F32, s...)
		}
	}
	return s
}

// checkLowRankBackwardInput validates LowRankBackwardInput's operands (panics on a mismatch) and returns m, c.
func checkLowRankBackwardInput(dF Factors, duOut, dlogits, h, u gpu.Tensor, f Factors, cluster []int32) (int, int) {
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
	return m, c
}
