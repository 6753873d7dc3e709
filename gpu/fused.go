package gpu

// Fused matmuls: a matmul and the op that follows it in a GPT-2 block, in
// one texture-matmul kernel where the adapter runs those (MatMulTex), else
// the two ops. Each fused kernel is a generated twin of a texture matmul
// with another epilogue (wgsl.TexKernels' Epi); its result is the two
// ops' bit for bit (TestProducedXSkipsCopies, TestFusedKVStore).

// texEpilogue is what a fused texture matmul binds beyond the plain
// kernel's: its kernel table, buffers read after bias and written after
// dst, textures after x and w, and Meta fields after the plain ones.
type texEpilogue struct {
	kernels map[DType][]texMatKernel
	in, out []binding
	tex     []texBinding
	meta    Meta
}

// texFused returns the x layout of a texture matmul of x (one chunk of
// rows) and f32 or f16 weights, or ok false when MatMul would run
// another kernel family (then the fused op runs the two ops).
func (w *WebGPU) texFused(dst, x, wt Tensor, m, k, n int) (xkt, xRowsPer int, tw uint32, ok bool) {
	dt := wt.DType()
	if !w.FuseEpilogues || w.Unfused || MatMulFamily(w.MatMulVariant, m) != "tex" || !w.HasTexRead || (dt != F32 && dt != F16) {
		return 0, 0, 0, false
	}
	xkt = texTexels(dt, k)
	if dt == F16 {
		xkt *= 2
	}
	lim := w.Limits.MaxTextureDimension2D
	xRowsPer, tw, _, ok = texFit(1, xkt, int(lim), lim)
	if !ok || len(w.matRowChunks(x, dst, m, k, n)) != 1 {
		return 0, 0, 0, false
	}
	return xkt, xRowsPer, tw, true
}

// MatMulGELU: dst(M,N) = gelu(x(M,K) · w(N,K)ᵀ + bias(N)). Where MatMul
// runs a texture matmul of f32 or f16 weights, one kernel does both and
// writes dst's texture copy for the next matmul too (the GELU twins of
// the texture kernels); otherwise, and where dst's texture would be x's
// own (N = K), MatMul into a scratch tensor then GELU.
func (w *WebGPU) MatMulGELU(dst, x, wt, bias Tensor) {
	m, k, n := MatMulDims(dst, x, wt, bias)
	if m == 0 || n == 0 {
		return
	}
	if w.matMulGELUTex(dst, x, wt, bias, m, k, n) {
		return
	}
	tmp, err := w.Alloc(F32, dst.Shape()...)
	if err != nil {
		w.rec.fail(&KernelError{"MatMulGELU", err})
		return
	}
	w.MatMul(tmp, x, wt, bias)
	w.GELU(dst, tmp)
	w.Free(tmp)
}

// matMulGELUTex records MatMulGELU as one texture kernel, or returns false
// having recorded nothing.
func (w *WebGPU) matMulGELUTex(dst, x, wt, bias Tensor, m, k, n int) bool {
	xkt, xRowsPer, tw, ok := w.texFused(dst, x, wt, m, k, n)
	if !ok {
		return false
	}
	if _, _, ok := w.xLayout(n); !ok || n == k {
		return false // no texture for dst, or it would be x's own
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false
	}
	out, ok := w.xTexFor(dst)
	if !ok {
		return false
	}
	ep := &texEpilogue{kernels: texGELUKernels, tex: []texBinding{{out.tex, true}}, meta: Meta{out.rowsPer}}
	w.matMulTexWith(dst, x, s, bias, w.spareBinding(), m, k, n, xkt, xRowsPer, tw, ep)
	w.xTexWritten(out, dst)
	return true
}

// MatMulKVStore: qkv(B,Tq,3C) = x · w(3C,K)ᵀ + bias, then KVStore(kCache,
// vCache, qkv, start, qlen). Where MatMul runs a texture matmul of f32 or
// f16 weights and the caches' texture copies are current (decode on a CPU
// adapter: KVStore would run kvstore_tex), one kernel does both (the KV
// twins of the texture kernels, C a multiple of 32); otherwise the two
// ops.
func (w *WebGPU) MatMulKVStore(qkv, x, wt, bias, kCache, vCache, start, qlen Tensor) {
	nb, tq, c, tmax := kvShapes("MatMulKVStore", kCache, vCache, qkv, start, qlen)
	m, k, n := MatMulDims(qkv, x, wt, bias)
	if m == 0 || tmax == 0 || !w.matMulKVTex(qkv, x, wt, bias, kCache, vCache, start, qlen, nb, tq, c, tmax, m, k, n) {
		w.MatMul(qkv, x, wt, bias)
		w.KVStore(kCache, vCache, qkv, start, qlen)
	}
}

// matMulKVTex records MatMulKVStore as one texture kernel, or returns
// false having recorded nothing.
func (w *WebGPU) matMulKVTex(qkv, x, wt, bias, kCache, vCache, start, qlen Tensor, nb, tq, c, tmax, m, k, n int) bool {
	if c%32 != 0 {
		return false
	}
	xkt, xRowsPer, tw, ok := w.texFused(qkv, x, wt, m, k, n)
	if !ok {
		return false
	}
	ks, vs, ok := w.kvTexturesCurrent(kCache, vCache, nb, tmax, c)
	if !ok {
		return false
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false
	}
	ep := &texEpilogue{kernels: texKVKernels,
		in:   []binding{w.bind(start), w.bind(qlen)},
		out:  []binding{w.bind(kCache), w.bind(vCache)},
		tex:  []texBinding{{ks.tex, true}, {vs.tex, true}},
		meta: Meta{c, tq, tmax, int(ks.tex.w)}}
	w.matMulTexWith(qkv, x, s, bias, w.spareBinding(), m, k, n, xkt, xRowsPer, tw, ep)
	// The copies stay current: they were written beside the buffers.
	ks.gen, vs.gen = w.t(kCache).buf.gen, w.t(vCache).buf.gen
	return true
}
