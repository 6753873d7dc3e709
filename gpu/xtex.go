package gpu

// Activations written straight into the texture matmuls' x layout.
//
// A texture matmul (MatMulTex, the CPU adapters' default) reads x from a
// texture, so every call used to begin with a copy of x into one
// (tex_pack.wgsl): at decode, a dispatch per matmul, 49 of ~163 a GPT-2
// step, each costing about as much as a small kernel on lavapipe. The ops
// whose output is a matmul's next x (LayerNorm, AddLayerNorm, decode
// Attention, MatMulGELU) instead write that texture themselves, beside
// their output buffer, in the same dispatch: their "_xt" kernels. There
// is one such texture per row length K (Device.xtex), and it records which
// buffer, at which version (Buffer.gen), it holds: a matmul whose x is
// that buffer, unchanged since, skips its copy. The next producer of rows
// of that length takes the texture over, so a stale copy is never read
// (a model's matmul reads its x right after the producer, so one texture
// per length is enough). The values are the output buffer's, bit
// for bit (the kernels store one value to both), and whether a copy is
// skipped never depends on how many rows an op has: a row's result is the
// same in any batch.

// xHeld names the activation a scratch texture holds: buf at version gen,
// rows of k values. The zero value holds nothing.
type xHeld struct {
	buf     *Buffer
	gen     uint64
	rows, k int
}

// xTarget is the texture an op writes its output's copy into, with the
// rows of x per texture row.
type xTarget struct {
	tex     *texture
	rowsPer int
}

// xLayout is the texture layout of x (rows of k f32) for the texture
// matmuls whose x a producer may write: k a multiple of 8, so that x has
// k/4 texels a row under f32 and f16 weights alike. It returns the rows
// per texture row and the texture's width (texFit's, as matMulTex lays x
// out); ok is false when producers write no copy of such x.
func (w *WebGPU) xLayout(k int) (rowsPer int, tw uint32, ok bool) {
	if w.Unfused || !w.HasTexRead || w.MatMulVariant != MatMulTex || k <= 0 || k%8 != 0 {
		return 0, 0, false
	}
	lim := w.Limits.MaxTextureDimension2D
	rowsPer, tw, _, ok = texFit(1, k/4, int(lim), lim)
	return rowsPer, tw, ok
}

// xTexFor returns the texture the producer of dst (rows, k) F32 writes
// its copy into, or ok false when it writes none (then it runs its plain
// kernel).
func (w *WebGPU) xTexFor(dst Tensor) (xTarget, bool) {
	rows, k := dims2(dst)
	rowsPer, tw, ok := w.xLayout(k)
	if !ok || rows == 0 {
		return xTarget{}, false
	}
	h := uint32(ceilDiv(rows, rowsPer))
	if h > w.Limits.MaxTextureDimension2D {
		return xTarget{}, false
	}
	tex := w.xtex[k]
	if tex == nil || tex.h < h {
		if tex != nil {
			w.retire(tex)
			delete(w.xtex, k)
		}
		var err error
		if tex, err = w.newTexture("x", tw, h); err != nil {
			w.rec.fail(err)
			return xTarget{}, false
		}
		w.xtex[k] = tex
	}
	tex.held = xHeld{} // until the producer's dispatch is recorded
	return xTarget{tex, rowsPer}, true
}

// xTexWritten records, once the producer's dispatch is recorded, that
// x.tex holds dst's current contents.
func (w *WebGPU) xTexWritten(x xTarget, dst Tensor) {
	if w.rec.err != nil {
		return // the dispatch may not have been recorded
	}
	t := w.t(dst)
	rows, k := dims2(dst)
	x.tex.held = xHeld{buf: t.buf, gen: t.buf.gen, rows: rows, k: k}
}

// xTexHeld returns the texture of rows of length k if it holds x (rows,
// k) as it is now.
func (w *WebGPU) xTexHeld(x Tensor, rows, k int) (*texture, bool) {
	tex := w.xtex[k]
	if tex == nil {
		return nil, false
	}
	t := w.t(x)
	h := tex.held
	if h.buf != t.buf || h.gen != t.buf.gen || h.rows != rows || h.k != k {
		return nil, false
	}
	return tex, true
}
