package gpu

import "fmt"

// dims2 returns (rows, cols) of a tensor viewed as a matrix over its last dim.
func dims2(t Tensor) (int, int) { return rowsCols(t.Shape()) }

func sameShape(op string, a, b Tensor) {
	as, bs := a.Shape(), b.Shape()
	if Numel(as) != Numel(bs) || len(as) != len(bs) {
		panic(fmt.Sprintf("gpu: %s: shapes %v and %v differ", op, as, bs))
	}
	for i := range as {
		if as[i] != bs[i] {
			panic(fmt.Sprintf("gpu: %s: shapes %v and %v differ", op, as, bs))
		}
	}
}

// Add: dst = a + b.
func (w *WebGPU) Add(dst, a, b Tensor) {
	sameShape("Add", a, b)
	sameShape("Add", dst, a)
	CheckShape("Add", "a", a, F32, a.Shape()...)
	CheckShape("Add", "b", b, F32, a.Shape()...)
	CheckShape("Add", "dst", dst, F32, a.Shape()...)
	n := Numel(a.Shape())
	x, y := w.grid1(ceilDiv(n, 256))
	w.dispatch("add", 2, 1, []binding{w.bind(a), w.bind(b), w.bind(dst)}, Meta{n}, x, y, 1)
}

// GELU: dst = gelu(x).
func (w *WebGPU) GELU(dst, x Tensor) {
	sameShape("GELU", dst, x)
	CheckShape("GELU", "x", x, F32, x.Shape()...)
	CheckShape("GELU", "dst", dst, F32, x.Shape()...)
	n := Numel(x.Shape())
	gx, gy := w.grid1(ceilDiv(n, 256))
	w.dispatch("gelu", 1, 1, []binding{w.bind(x), w.bind(dst)}, Meta{n}, gx, gy, 1)
}

// LayerNorm over the last dim.
func (w *WebGPU) LayerNorm(dst, x, gamma, beta Tensor, eps float32) {
	m, c := dims2(x)
	sameShape("LayerNorm", dst, x)
	CheckShape("LayerNorm", "x", x, F32, x.Shape()...)
	CheckShape("LayerNorm", "dst", dst, F32, x.Shape()...)
	CheckShape("LayerNorm", "gamma", gamma, F32, c)
	CheckShape("LayerNorm", "beta", beta, F32, c)
	gx, gy := w.grid1(m)
	bs := []binding{w.bind(x), w.bind(gamma), w.bind(beta), w.bind(dst)}
	if xt, ok := w.xTexFor(dst); ok {
		// dst is a texture matmul's x: write its texture too (xtex.go).
		w.dispatchTex(w.RowKernel("layernorm_xt"), 3, 1, bs, []texBinding{{xt.tex, true}}, Meta{m, c, eps, xt.rowsPer}, gx, gy, 1)
		w.xTexWritten(xt, dst)
		return
	}
	w.dispatch(w.RowKernel("layernorm"), 3, 1, bs, Meta{m, c, eps}, gx, gy, 1)
}

// RowKernel names a row-reduction kernel for the adapter: name (256
// invocations per row) or name_wg8 (8), see WebGPU.RowWG.
func (w *WebGPU) RowKernel(name string) string {
	if w.RowWG == 8 {
		return name + "_wg8"
	}
	return name
}

// AddLayerNorm: sum = a + b and dst = LayerNorm(sum), one kernel
// (wgsl/add_layernorm.wgsl): a decode step has a residual add before most
// of its layer norms, and on small batches each dispatch costs more than
// its arithmetic.
func (w *WebGPU) AddLayerNorm(sum, dst, a, b, gamma, beta Tensor, eps float32) {
	m, c := dims2(a)
	sameShape("AddLayerNorm", b, a)
	sameShape("AddLayerNorm", sum, a)
	sameShape("AddLayerNorm", dst, a)
	for _, x := range []struct {
		name string
		t    Tensor
	}{{"a", a}, {"b", b}, {"sum", sum}, {"dst", dst}} {
		CheckShape("AddLayerNorm", x.name, x.t, F32, a.Shape()...)
	}
	CheckShape("AddLayerNorm", "gamma", gamma, F32, c)
	CheckShape("AddLayerNorm", "beta", beta, F32, c)
	gx, gy := w.grid1(m)
	bs := []binding{w.bind(a), w.bind(b), w.bind(gamma), w.bind(beta), w.bind(sum), w.bind(dst)}
	if xt, ok := w.xTexFor(dst); ok {
		// dst is a texture matmul's x: write its texture too (xtex.go).
		w.dispatchTex(w.RowKernel("add_layernorm_xt"), 4, 2, bs, []texBinding{{xt.tex, true}}, Meta{m, c, eps, xt.rowsPer}, gx, gy, 1)
		w.xTexWritten(xt, dst)
		return
	}
	w.dispatch(w.RowKernel("add_layernorm"), 4, 2, bs, Meta{m, c, eps}, gx, gy, 1)
}

// rowChunk is a run of rows [start, start+n) of a matrix bound as one
// storage-buffer range.
type rowChunk struct {
	start, n int
	b        binding
}

// rowChunks splits the rows of t (each rowBytes long on the GPU) into
// ranges that fit one storage binding and start at an offset the device
// accepts. Most tensors are one chunk; GPT-2's 50257x768 f32 embedding is
// two on adapters with 128 MiB bindings.
func (w *WebGPU) rowChunks(op string, x Tensor) []rowChunk {
	t := w.t(x)
	if t.buf == nil {
		panic(heldAsTexture(op, t))
	}
	rows, _ := rowsCols(t.shape)
	if t.bytes <= w.Limits.MaxStorageBufferBindingSize || rows <= 1 {
		return []rowChunk{{0, rows, w.bind(x)}}
	}
	rowBytes := t.bytes / uint64(rows)
	align := uint64(w.Limits.MinStorageOffsetAlignment)
	per := int(w.Limits.MaxStorageBufferBindingSize / rowBytes)
	// The chunk length in bytes must keep the next chunk's offset aligned.
	for per > 0 && (uint64(per)*rowBytes)%align != 0 {
		per--
	}
	if per == 0 {
		panic(fmt.Sprintf("gpu: %s: rows of %d bytes cannot be split into aligned bindings", op, rowBytes))
	}
	var out []rowChunk
	for s := 0; s < rows; s += per {
		n := min(per, rows-s)
		out = append(out, rowChunk{s, n, binding{buf: t.buf, offset: uint64(s) * rowBytes, size: uint64(n) * rowBytes}})
	}
	return out
}

// Embed: dst(M,C) = wte[tokens] + wpe[pos].
func (w *WebGPU) Embed(dst, wte, wpe, tokens, pos Tensor) {
	_, c := dims2(wte)
	m := Numel(tokens.Shape())
	dt := wte.DType()
	if dt != F32 && dt != F16 {
		panic("gpu: Embed: wte must be f32 or f16")
	}
	CheckShape("Embed", "wpe", wpe, dt, -1, c)
	CheckShape("Embed", "tokens", tokens, I32, m)
	CheckShape("Embed", "pos", pos, I32, m)
	if r, cc := dims2(dst); r != m || cc != c || dst.DType() != F32 {
		panic(fmt.Sprintf("gpu: Embed: dst is %v%v, want f32 with %d rows of %d", dst.DType(), dst.Shape(), m, c))
	}
	name := "embed_f32"
	if dt == F16 {
		name = "embed_f16"
	}
	gx, gy := w.grid1(ceilDiv(m*c, 256))
	if s := w.t(wte).tex; s != nil {
		// A settled wte (resident.go): gathered from its texture.
		w.nextBytes = float64(m*c) * float64(2*dt.Size()+4)
		tx, ty := w.grid1(ceilDiv(m*s.kt, 64))
		w.dispatchTex("embed_tex_"+dt.String(), 3, 1, []binding{w.bind(wpe), w.bind(tokens), w.bind(pos), w.bind(dst)},
			[]texBinding{{s.tex, false}}, Meta{m, c, s.rows, s.kt, int(s.tex.w)}, tx, ty, 1)
		return
	}
	for _, ch := range w.rowChunks("Embed", wte) {
		// A gather: M rows of each table read, M rows written.
		w.nextBytes = float64(m*c) * float64(2*dt.Size()+4)
		w.dispatch(name, 4, 1, []binding{ch.b, w.bind(wpe), w.bind(tokens), w.bind(pos), w.bind(dst)},
			Meta{m, c, ch.start, ch.n}, gx, gy, 1)
	}
}

// Rows: dst(R,C) = x[idx[r]].
func (w *WebGPU) Rows(dst, x, idx Tensor) {
	m, c := dims2(x)
	r := Numel(idx.Shape())
	CheckShape("Rows", "x", x, F32, x.Shape()...)
	CheckShape("Rows", "idx", idx, I32, r)
	if dr, dc := dims2(dst); dr != r || dc != c || dst.DType() != F32 {
		panic(fmt.Sprintf("gpu: Rows: dst is %v%v, want f32 with %d rows of %d", dst.DType(), dst.Shape(), r, c))
	}
	gx, gy := w.grid1(ceilDiv(r*c, 256))
	w.nextBytes = float64(r*c) * 8
	w.dispatch("rows", 2, 1, []binding{w.bind(x), w.bind(idx), w.bind(dst)}, Meta{r, c, m}, gx, gy, 1)
}
