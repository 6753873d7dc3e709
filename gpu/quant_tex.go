package gpu

import "strings"

// matMulQuantTex is MatMul of one row of x with quantized w through
// textures (matmul_qtex1_*.wgsl), for CPU adapters, where texture loads are
// far cheaper than storage loads (texture.go): w's packed rows are copied
// once into a texture (weightTexture) and x into a scratch one per call.
// It returns false, having recorded nothing, when it does not apply: M > 1
// (the register kernels read the blocks from storage there), no texture
// reads, a row that does not fit a texture, or BatchInvariant (the texture
// mat-vec sums in another order than the register kernels, so a row alone
// would not equal the same row in a batch).
func (w *WebGPU) matMulQuantTex(dst, x, wt, bias Tensor, m, k, n int) bool {
	if !w.HasTexRead || m != 1 || w.BatchInvariant || k/4 > int(w.Limits.MaxTextureDimension2D) {
		return false
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false
	}
	xkt := k / 4
	xtex, err := w.scratchTexture(uint32(xkt), 1)
	if err != nil {
		w.rec.fail(err)
		return true
	}
	w.pack(F32, w.bind(x), xtex, 1, k, xkt, 1, 0, false)
	bb, hasBias := w.rowChunks("MatMul", wt)[0].b, 0 // any read-only buffer when there is no bias
	if bias != nil {
		bb, hasBias = w.bind(bias), 1
	}
	const bn = 64 // columns per workgroup (the kernel's BN)
	name := "matmul_qtex1_" + strings.ToLower(wt.DType().String())
	tilesN := ceilDiv(n, bn)
	step := max(1, min(tilesN, int(texSubmitFlops/(2*float64(bn)*float64(k)))))
	for t0 := 0; t0 < tilesN; t0 += step {
		cnt := min(step, tilesN-t0)
		gx, gy := w.grid1(cnt)
		w.nextFlops = 2 * float64(k) * float64(n) * float64(cnt) / float64(tilesN)
		w.nextBytes = (float64(s.rows*s.kt)*16 + float64(xkt)*16) * float64(cnt) / float64(tilesN)
		w.dispatchTex(name, 1, 1, []binding{bb, w.bind(dst)}, []texBinding{{xtex, false}, {s.tex, false}},
			Meta{n, k, s.kt, int(s.tex.w), hasBias, tilesN, t0}, gx, gy, 1)
		if cnt < tilesN {
			if err := w.flush(); err != nil {
				w.rec.fail(err)
			}
		}
	}
	return true
}
