package gpu

import "fmt"

// One device copy per weight matrix.
//
// On a CPU adapter the texture matmuls (MatMulTex) read a weight matrix
// from its texture copy (texture.go's shadow), never from its storage
// buffer; and there device memory is host memory. Keeping both doubled
// the resident weights of an inference process (GPT-2 124M f16: ~250 MB
// of buffers plus ~250 MB of textures). A settled matrix has the texture
// as its only copy: WriteSettled writes a new matrix straight into it,
// SettleWeight packs it from a written buffer; either destroys the buffer.
//
// Which kernels read a settled tensor: the texture matmuls (MatMul,
// MatMulGELU, MatMulKVStore with f32/f16 weights, and with quantized
// weights the texture mat-vec and the unpack-then-matmul prefill), all of
// which go through weightTexture, and Embed's gather (embed_tex_*.wgsl),
// so a settled wte serves as both table and tied head. Everything else
// binds the storage buffer (the register/tile/gemv kernels a non-texture
// variant or BatchInvariant quantized MatMul would run, MatMulBackward,
// the adapters' and clustering kernels, Copy, Write, ReadF32): on a settled
// tensor those panic, or return an error, saying that the tensor is held
// only as its texture; never a read of a freed buffer. So only the caller
// knows what to settle: an inference model's layer matrices, and wte when
// no adapter reads it (model.UploadOptions); not training parameters.

// WeightSettler is a backend that can keep a weight matrix as the one copy
// its inference kernels read (WebGPU on CPU adapters).
type WeightSettler interface {
	// WriteSettled is Write (data as Write takes it) for MatMul's w of an
	// inference model, writing into the device copy MatMul reads and
	// keeping no other; settled is false where the backend keeps a
	// single copy anyway or MatMul would still read the other (then it is
	// a plain Write). After a settle, t is MatMul's w (and Embed's wte)
	// only: see resident.go.
	WriteSettled(t Tensor, data any) (settled bool, err error)
}

// WriteSettled calls b's WriteSettled if b is a WeightSettler, else Write;
// settled reports which.
func WriteSettled(b Backend, t Tensor, data any) (bool, error) {
	if s, ok := b.(WeightSettler); ok {
		return s.WriteSettled(t, data)
	}
	return false, b.Write(t, data)
}

// MemStats is what a device holds: bytes of storage buffers created (in use
// or pooled for reuse) and of textures (weights' copies, scratch and
// activation copies).
type MemStats struct {
	BufferBytes  uint64 `json:"buffer_bytes"`
	TextureBytes uint64 `json:"texture_bytes"`
}

// MemStats returns the device's current buffer and texture bytes.
func (d *Device) MemStats() MemStats {
	return MemStats{BufferBytes: d.pool.live, TextureBytes: d.texBytes}
}

// settles reports whether MatMul with w of dtype dt and shape (n, k) runs
// the texture kernels on this backend for every M (so that a settled w is
// never asked for its buffer); whether w's own texture fits is the
// caller's check.
func (w *WebGPU) settles(dt DType, n, k int) bool {
	if !w.HasTexRead || w.MatMulVariant != MatMulTex || k < 1 {
		return false
	}
	lim := int(w.Limits.MaxTextureDimension2D)
	if dt.Quantized() {
		// matMulQuantTex's and matMulUnpacked's conditions; BatchInvariant
		// (the server) runs the register kernels from the buffer instead.
		_, _, unpacks := texFitBlocked(n, k/4, w.Limits.MaxTextureDimension2D)
		return !w.BatchInvariant && k/4 <= lim && unpacks
	}
	xkt := texTexels(dt, k)
	if dt == F16 {
		xkt *= 2
	}
	return (dt == F32 || dt == F16) && xkt <= lim
}

// SettleWeight packs the written weight matrix wt's texture copy and
// destroys its storage buffer, where the texture matmuls are what reads it
// (see resident.go); it reports false, changing nothing, elsewhere (GPUs,
// the browser's register kernels, a matrix too large for a texture,
// quantized weights under BatchInvariant). wt must be a 2-D matrix.
func (w *WebGPU) SettleWeight(wt Tensor) (bool, error) {
	t := w.t(wt)
	if t.tex != nil {
		return true, nil
	}
	if len(t.shape) != 2 || !w.settles(t.dt, t.shape[0], t.shape[1]) {
		return false, nil
	}
	s, ok := w.weightTexture(wt)
	if !ok {
		return false, w.flush()
	}
	if err := w.flush(); err != nil {
		return false, fmt.Errorf("gpu: SettleWeight %v%v: %w", t.dt, t.shape, err)
	}
	delete(w.shadows, t.buf)
	w.settle(t, s)
	return true, nil
}

// WriteSettled writes data into the weight matrix wt (freshly allocated,
// not yet written or read) straight into its texture copy, a chunk of rows
// at a time through a small buffer, and destroys wt's storage buffer
// (which was never touched, so on a CPU adapter it never took memory):
// the matrix is never on the device twice. Where SettleWeight would not
// settle, it is Write. On an error, wt may only be freed.
func (w *WebGPU) WriteSettled(wt Tensor, data any) (bool, error) {
	t := w.t(wt)
	if t.buf == nil || len(t.shape) != 2 || !w.settles(t.dt, t.shape[0], t.shape[1]) {
		return false, w.Write(wt, data)
	}
	rows, k := t.shape[0], t.shape[1]
	kt := texTexels(t.dt, k)
	tw, th, ok := texFitBlocked(rows, kt, w.Limits.MaxTextureDimension2D)
	if !ok {
		return false, w.Write(wt, data)
	}
	n, rowBytes, fill, err := deviceRows(t, data)
	if err != nil {
		return false, err
	}
	if err := w.flush(); err != nil {
		return false, err
	}
	tex, err := w.newTexture("weights", tw, th)
	if err != nil {
		return false, err
	}
	w.settle(t, &shadow{tex: tex, rows: rows, k: k, dt: t.dt, kt: kt})
	per := max(1, writeChunk/rowBytes)
	stage, err := w.pool.get(uint64(min(per, n)*rowBytes), "weight upload")
	if err != nil {
		return false, err
	}
	defer w.pool.destroy(stage) // not pooled: an upload's chunks are of sizes nothing else uses
	for r0 := 0; r0 < n; r0 += per {
		m := min(per, n-r0)
		// writeRows flushes the previous chunk's pack before it writes.
		if err := w.writeRows(stage, 0, m, rowBytes, func(dst []byte, r int) { fill(dst, r0+r) }); err != nil {
			return false, err
		}
		w.pack(t.dt, binding{buf: stage, size: uint64(m * rowBytes)}, tex, m, k, kt, int(tw), r0, true)
	}
	if err := w.flush(); err != nil {
		return false, fmt.Errorf("gpu: WriteSettled %v%v: %w", t.dt, t.shape, err)
	}
	return true, nil
}

// settle makes s the tensor's only copy, destroying its buffer.
func (w *WebGPU) settle(t *tensor, s *shadow) {
	w.settled[s.tex] = true
	w.pool.destroy(t.buf)
	t.buf, t.tex = nil, s
}

// heldAsTexture is the message for an op that needs the storage buffer of
// a settled weight.
func heldAsTexture(op string, t *tensor) string {
	return fmt.Sprintf("gpu: %s: the %v%v weight is held only as its texture copy (settled: gpu/resident.go), "+
		"and this op reads its storage buffer", op, t.dt, t.shape)
}

// spareBinding is a small read-only buffer bound where a kernel's layout
// has a binding it does not read (the texture matmuls' bias when there is
// none), kept for the device's life.
func (w *WebGPU) spareBinding() binding {
	if w.spare == nil {
		b, err := w.pool.get(256, "spare")
		if err != nil {
			w.rec.fail(err)
			return binding{}
		}
		w.spare = b
	}
	return binding{buf: w.spare, offset: 0, size: 256}
}

// destroy releases b's memory now (not back to the pool): it must not be
// in use by recorded work.
func (p *bufferPool) destroy(b *Buffer) {
	for i, x := range p.all {
		if x == b {
			p.all = append(p.all[:i], p.all[i+1:]...)
			break
		}
	}
	p.live -= b.size
	b.buf.Destroy()
	b.buf.Release()
}
