package gpu

import (
	"fmt"
	"math"
)

// The WebGPU side of TrainBackend: backward ops and the optimizer. Contract
// (see TrainBackend): weight gradients accumulate, activation gradients are
// written. Every op binds its accumulators read-write and never binds one
// buffer twice.

var _ TrainBackend = (*WebGPU)(nil)

// Loop bounds kept well under lavapipe's 65,535 loop iterations per
// invocation (see wgsl/wgsl.go): the contraction length of one matmul
// backward dispatch, and the rows one column-sum dispatch adds up.
const (
	bwdMaxK    = 8192
	bwdMaxRows = 8192
	// maxEmbedBackwardRows bounds M for EmbedBackward: an invocation of
	// wgsl/embed_backward_link.wgsl scans all M rows.
	maxEmbedBackwardRows = 60000
	// cpuSubmitElems bounds the elements of one elementwise submission on
	// CPU adapters (AdamW over 124M parameters would otherwise run past
	// wgpu's fence wait in one submit).
	cpuSubmitElems = 1 << 24
)

// flatChunk is a run [start, start+n) of the 4-byte words of several
// equally sized tensors, bound as one range each.
type flatChunk struct {
	start, n int
	b        []binding
}

// flatChunks splits tensors of equal byte size into word ranges that fit
// one storage binding at aligned offsets (and, on CPU adapters, one
// submission's worth of work).
func (w *WebGPU) flatChunks(op string, ts ...Tensor) []flatChunk {
	words := int(w.t(ts[0]).bytes / 4)
	for _, x := range ts[1:] {
		if int(w.t(x).bytes/4) != words {
			panic(fmt.Sprintf("gpu: %s: tensors %v and %v differ in size", op, ts[0].Shape(), x.Shape()))
		}
	}
	alignW := max(1, int(w.Limits.MinStorageOffsetAlignment)/4)
	per := int(w.Limits.MaxStorageBufferBindingSize/4) / alignW * alignW
	if w.Info.Type == "cpu" {
		per = min(per, cpuSubmitElems)
	}
	if words <= per {
		bs := make([]binding, len(ts))
		for i, x := range ts {
			bs[i] = w.bind(x)
		}
		return []flatChunk{{0, words, bs}}
	}
	var out []flatChunk
	for s := 0; s < words; s += per {
		n := min(per, words-s)
		bs := make([]binding, len(ts))
		for i, x := range ts {
			bs[i] = binding{buf: w.t(x).buf, offset: uint64(s) * 4, size: uint64(n) * 4}
		}
		out = append(out, flatChunk{s, n, bs})
	}
	return out
}

// elementwise dispatches kernel name (WG = 256 words per workgroup, Meta
// starting with n) over every flat chunk of ins then outs; extra are bound
// after them unchunked and meta follows n. Between chunks on CPU adapters it
// submits, so each submission stays short.
func (w *WebGPU) elementwise(op, name string, ins, outs, extra []Tensor, meta ...any) {
	ts := append(append([]Tensor{}, ins...), outs...)
	chunks := w.flatChunks(op, ts...)
	for ci, ch := range chunks {
		bs := append([]binding{}, ch.b[:len(ins)]...)
		for _, x := range extra {
			bs = append(bs, w.bind(x))
		}
		bs = append(bs, ch.b[len(ins):]...)
		gx, gy := w.grid1(ceilDiv(ch.n, 256))
		w.dispatch(name, len(ins)+len(extra), len(outs), bs, append(Meta{ch.n}, meta...), gx, gy, 1)
		if ci+1 < len(chunks) && w.Info.Type == "cpu" {
			if err := w.flush(); err != nil {
				w.rec.fail(err)
			}
		}
	}
}

// Zero: dst = 0.
func (w *WebGPU) Zero(dst Tensor) {
	w.elementwise("Zero", "zero", nil, []Tensor{dst}, nil)
}

// Accumulate: dst += x.
func (w *WebGPU) Accumulate(dst, x Tensor) {
	sameShape("Accumulate", dst, x)
	CheckShape("Accumulate", "x", x, F32, x.Shape()...)
	CheckShape("Accumulate", "dst", dst, F32, x.Shape()...)
	w.elementwise("Accumulate", "accumulate", []Tensor{x}, []Tensor{dst}, nil)
}

// GELUBackward: dx = dOut * gelu'(x).
func (w *WebGPU) GELUBackward(dx, dOut, x Tensor) {
	CheckShape("GELUBackward", "x", x, F32, x.Shape()...)
	CheckShape("GELUBackward", "dOut", dOut, F32, x.Shape()...)
	CheckShape("GELUBackward", "dx", dx, F32, x.Shape()...)
	w.elementwise("GELUBackward", "gelu_backward", []Tensor{dOut, x}, []Tensor{dx}, nil)
}

// AdamW: one AdamW step on param, m and v in place (wgsl/adamw.wgsl).
func (w *WebGPU) AdamW(param, m, v, grad, normSq Tensor, p AdamWParams) {
	AdamWCheck(param, m, v, grad, normSq, p)
	gscale, bc1, bc2 := AdamWMeta(p)
	clip := p.ClipNorm
	ns := normSq
	if ns == nil || !(clip > 0) {
		// No clipping: the kernel never reads normsq, but the binding must
		// exist; a one-word scratch stands in (grad itself may be too large
		// to bind whole).
		ns, clip = Must(w.Alloc(F32, 1)), 0
		defer w.Free(ns)
	}
	w.elementwise("AdamW", "adamw", []Tensor{grad}, []Tensor{param, m, v}, []Tensor{ns},
		p.LR, p.Beta1, p.Beta2, p.Eps, p.WeightDecay, bc1, bc2, gscale, clip)
}

// GradNormSq: dst(1) = Σ g² over every grad, by a deterministic tree of
// wgsl/sumsq.wgsl passes: each grad (in binding-sized chunks) is reduced
// 64:1 into a scratch vector, which is reduced 64:1 again, alternating
// between two scratch buffers, until one value is left in dst.
func (w *WebGPU) GradNormSq(dst Tensor, grads ...Tensor) {
	if dst.DType() != F32 || Numel(dst.Shape()) != 1 {
		panic(fmt.Sprintf("gpu: GradNormSq: dst is %v%v, want f32 with 1 element", dst.DType(), dst.Shape()))
	}
	const per = 64 // PER in wgsl/sumsq.wgsl
	type part struct {
		b    binding
		n    int
		base int
	}
	var parts []part
	total := 0
	for _, g := range grads {
		CheckShape("GradNormSq", "grad", g, F32, g.Shape()...)
		if Numel(g.Shape()) == 0 {
			continue
		}
		for _, ch := range w.flatChunks("GradNormSq", g) {
			parts = append(parts, part{ch.b[0], ch.n, total})
			total += ceilDiv(ch.n, per)
		}
	}
	if total == 0 {
		w.Zero(dst)
		return
	}
	if total == 1 {
		// One small gradient: a single pass writes dst.
		gx, gy := w.grid1(1)
		w.dispatch("sumsq", 1, 1, []binding{parts[0].b, w.bind(dst)}, Meta{parts[0].n, 1, 1, 0}, gx, gy, 1)
		return
	}
	s0 := Must(w.Alloc(F32, total))
	s1 := Must(w.Alloc(F32, ceilDiv(total, per)))
	defer w.Free(s0)
	defer w.Free(s1)
	for _, pt := range parts {
		nout := ceilDiv(pt.n, per)
		gx, gy := w.grid1(ceilDiv(nout, 64))
		w.dispatch("sumsq", 1, 1, []binding{pt.b, w.bind(s0)}, Meta{pt.n, nout, 1, pt.base}, gx, gy, 1)
	}
	src, other, n := s0, s1, total
	for n > 1 {
		nout := ceilDiv(n, per)
		out := other
		if nout == 1 {
			out = dst
		}
		gx, gy := w.grid1(ceilDiv(nout, 64))
		w.dispatch("sumsq", 1, 1, []binding{w.bind(src), w.bind(out)}, Meta{n, nout, 0, 0}, gx, gy, 1)
		src, other, n = out, src, nout
	}
}

// LayerNormBackward: dx written; dGamma, dBeta accumulated. One workgroup
// per row computes dx and saves the row's (mean, rstd) in a scratch (M,2)
// (wgsl/layernorm_backward.wgsl); then one invocation per column sums
// the parameter gradients over the rows in order
// (wgsl/layernorm_backward_params.wgsl).
func (w *WebGPU) LayerNormBackward(dx, dGamma, dBeta, dOut, x, gamma Tensor, eps float32) {
	m, c := dims2(x)
	CheckShape("LayerNormBackward", "x", x, F32, x.Shape()...)
	CheckShape("LayerNormBackward", "dOut", dOut, F32, x.Shape()...)
	CheckShape("LayerNormBackward", "dx", dx, F32, x.Shape()...)
	CheckShape("LayerNormBackward", "gamma", gamma, F32, c)
	CheckShape("LayerNormBackward", "dGamma", dGamma, F32, c)
	CheckShape("LayerNormBackward", "dBeta", dBeta, F32, c)
	if m == 0 || c == 0 {
		return
	}
	stats := Must(w.Alloc(F32, m, 2))
	defer w.Free(stats)
	xs, gs, ds := w.rowChunks("LayerNormBackward", x), w.rowChunks("LayerNormBackward", dOut), w.rowChunks("LayerNormBackward", dx)
	for i, ch := range xs {
		gx, gy := w.grid1(ch.n)
		w.dispatch("layernorm_backward", 3, 2, []binding{ch.b, gs[i].b, w.bind(gamma), ds[i].b, w.bind(stats)},
			Meta{ch.n, c, eps, ch.start}, gx, gy, 1)
	}
	for i, ch := range xs {
		for r0 := 0; r0 < ch.n; r0 += bwdMaxRows {
			gx, gy := w.grid1(ceilDiv(c, 64))
			w.dispatch("layernorm_backward_params", 3, 2,
				[]binding{ch.b, gs[i].b, w.bind(stats), w.bind(dGamma), w.bind(dBeta)},
				Meta{r0, min(bwdMaxRows, ch.n-r0), c, ch.start}, gx, gy, 1)
		}
	}
}

// CrossEntropyBackward: dLogits = scale*(softmax - onehot), zero on masked
// rows (wgsl/crossentropy_backward.wgsl, one workgroup per row; logits
// larger than a storage binding go in row chunks).
func (w *WebGPU) CrossEntropyBackward(dLogits, logits, targets Tensor, scale float32) {
	CheckShape("CrossEntropyBackward", "logits", logits, F32, logits.Shape()...)
	CheckShape("CrossEntropyBackward", "dLogits", dLogits, F32, logits.Shape()...)
	m, v := dims2(logits)
	checkVocabRows("CrossEntropyBackward", "targets", targets, I32, m)
	if m == 0 || v == 0 {
		return
	}
	src, out := w.rowChunks("CrossEntropyBackward", logits), w.rowChunks("CrossEntropyBackward", dLogits)
	for i, ch := range src {
		gx, gy := w.grid1(ch.n)
		w.dispatch(w.RowKernel("crossentropy_backward"), 2, 1, []binding{ch.b, w.bind(targets), out[i].b},
			Meta{ch.n, v, ch.start, scale}, gx, gy, 1)
	}
}

// EmbedBackward: dWte[tokens[m]] += dOut[m], dWpe[pos[m]] += dOut[m],
// deterministic without atomics. For each table: one pass links every row
// to the next row with the same id and marks the first
// (wgsl/embed_backward_link.wgsl, O(M²) compares); then each (first row,
// channel) invocation walks its chain in row order and adds the sum to the
// table row once (wgsl/embed_backward.wgsl), per binding-sized chunk of
// the table. Ids outside [0, rows) add nothing. M must be at most 60000.
func (w *WebGPU) EmbedBackward(dWte, dWpe, dOut, tokens, pos Tensor) {
	m, c := EmbedBackwardDims(dWte, dWpe, dOut, tokens, pos)
	if m > maxEmbedBackwardRows {
		panic(fmt.Sprintf("gpu: EmbedBackward: %d rows, at most %d per call (split the micro-batch)", m, maxEmbedBackwardRows))
	}
	if m == 0 || c == 0 {
		return
	}
	link := Must(w.Alloc(I32, 2*m))
	defer w.Free(link)
	scatter := func(table, ids Tensor) {
		gx, gy := w.grid1(ceilDiv(m, 64))
		w.dispatch("embed_backward_link", 1, 1, []binding{w.bind(ids), w.bind(link)}, Meta{m}, gx, gy, 1)
		for _, ch := range w.rowChunks("EmbedBackward", table) {
			gx, gy := w.grid1(ceilDiv(m*c, 256))
			w.dispatch("embed_backward", 3, 1, []binding{w.bind(dOut), w.bind(ids), w.bind(link), ch.b},
				Meta{m, c, ch.start, ch.n}, gx, gy, 1)
		}
	}
	scatter(dWte, tokens)
	if dWpe != nil {
		scatter(dWpe, pos)
	}
}

// gemmArgs describes one strided product of wgsl/matmul_backward_*.wgsl:
// D(i,j) [+]= Σ_k A(i,k) B(k,j) with A(i,k) = a[aOff + i*aSI + k*aSK],
// B(k,j) = b[bOff + k*bSK + j], D(i,j) = dst[dOff + i*dSI + j].
type gemmArgs struct {
	ni, nj, nk     int
	aOff, aSI, aSK int
	bOff, bSK      int
	dOff, dSI      int
	accumulate     bool
	a, b, dst      binding
}

// gemmKernels maps a matmul family to the backward kernel and its block.
var gemmKernels = map[string]matKernel{
	"reg":  {"matmul_backward_reg", 16, 128},
	"tile": {"matmul_backward_tile", 64, 64},
}

// gemm dispatches one strided product: the contraction in pieces of at
// most bwdMaxK (each after the first accumulating), and on CPU adapters
// the tiles in submissions of at most cpuSubmitFlops.
func (w *WebGPU) gemm(g gemmArgs) {
	if g.ni == 0 || g.nj == 0 {
		return
	}
	fam := "tile"
	if w.matMulFamily(max(g.ni, 64)) != "tile" {
		fam = "reg"
	}
	kern := gemmKernels[fam]
	tilesJ := ceilDiv(g.nj, kern.bn)
	total := tilesJ * ceilDiv(g.ni, kern.bm)
	for k0 := 0; k0 < max(g.nk, 1); k0 += bwdMaxK {
		nk := min(bwdMaxK, g.nk-k0)
		acc := g.accumulate || k0 > 0
		perTile := 2 * float64(kern.bm) * float64(kern.bn) * float64(max(nk, 1))
		step := w.tileStep(total, perTile)
		for t0 := 0; t0 < total; t0 += step {
			cnt := min(step, total-t0)
			gx, gy := w.grid1(cnt)
			w.dispatch(kern.name, 2, 1, []binding{g.a, g.b, g.dst},
				Meta{g.ni, g.nj, nk, g.aOff + k0*g.aSK, g.aSI, g.aSK, g.bOff + k0*g.bSK, g.bSK,
					g.dOff, g.dSI, acc, tilesJ, t0}, gx, gy, 1)
			if cnt < total {
				if err := w.flush(); err != nil {
					w.rec.fail(err)
				}
			}
		}
	}
}

// MatMulBackward: dx = dOut·w (written, unless dx is nil), dW += dOutᵀ·x,
// dBias += Σ_rows dOut (unless nil). Both products run the strided kernel
// of the adapter's matmul family (wgsl/matmul_backward_reg.wgsl on CPU
// adapters, _tile on GPUs). Operands larger than a storage binding (the
// vocabulary projection's dOut(M,V), w and dW(V,C)) go in chunks: rows of
// dOut, x and dx in aligned runs, rows of w and dW as rowChunks; each
// chunk pair adds its partial product.
func (w *WebGPU) MatMulBackward(dx, dW, dBias, dOut, x, wt Tensor) {
	m, k, n := MatMulBackwardDims(dx, dW, dBias, dOut, x, wt)
	if dx != nil && n == 0 {
		w.Zero(dx)
	}
	if m == 0 || k == 0 && dBias == nil || n == 0 {
		return
	}
	gt, xt := w.t(dOut), w.t(x)
	rowsPer := m
	lim := w.Limits.MaxStorageBufferBindingSize
	if gt.bytes > lim || xt.bytes > lim {
		// Rows per chunk: as many as fit, such that both row strides keep
		// the next chunk's offsets aligned.
		align := int(w.Limits.MinStorageOffsetAlignment)
		rowsPer = int(lim / uint64(4*max(k, n)))
		for rowsPer > 0 && ((rowsPer*4*k)%align != 0 || (rowsPer*4*n)%align != 0) {
			rowsPer--
		}
		if rowsPer == 0 {
			panic(fmt.Sprintf("gpu: MatMulBackward: a row of %d or %d floats is too large to bind in aligned chunks", k, n))
		}
	}
	wch, dwch := w.rowChunks("MatMulBackward", wt), w.rowChunks("MatMulBackward", dW)
	for r0 := 0; r0 < m; r0 += rowsPer {
		rm := min(rowsPer, m-r0)
		gb := binding{buf: gt.buf, offset: uint64(r0 * n * 4), size: uint64(rm * n * 4)}
		xb := binding{buf: xt.buf, offset: uint64(r0 * k * 4), size: uint64(max(rm*k, 1) * 4)}
		for ci, ch := range wch {
			if k > 0 {
				// dW[chunk] += dOut[rows, chunk cols]ᵀ · x[rows]
				w.gemm(gemmArgs{ni: ch.n, nj: k, nk: rm, aOff: ch.start, aSI: 1, aSK: n, bOff: 0, bSK: k,
					dOff: 0, dSI: k, accumulate: true, a: gb, b: xb, dst: dwch[ci].b})
			}
			if dx != nil && k > 0 {
				// dx[rows] (+)= dOut[rows, chunk cols] · w[chunk]
				dt := w.t(dx)
				db := binding{buf: dt.buf, offset: uint64(r0 * k * 4), size: uint64(rm * k * 4)}
				w.gemm(gemmArgs{ni: rm, nj: k, nk: ch.n, aOff: ch.start, aSI: n, aSK: 1, bOff: 0, bSK: k,
					dOff: 0, dSI: k, accumulate: ci > 0, a: gb, b: ch.b, dst: db})
			}
		}
		if dBias != nil {
			for s := 0; s < rm; s += bwdMaxRows {
				gx, gy := w.grid1(ceilDiv(n, 64))
				w.dispatch("colsum_acc", 1, 1, []binding{gb, w.bind(dBias)}, Meta{s, min(bwdMaxRows, rm-s), n}, gx, gy, 1)
			}
		}
	}
}

// attnScale is 1/sqrt(D) in f32, as the forward kernels use it.
func attnScale(d int) float32 { return float32(1 / math.Sqrt(float64(d))) }
