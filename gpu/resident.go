package gpu

import "fmt"

// One device copy per weight matrix.
//
// On a CPU adapter the texture matmuls (MatMulTex) read a weight matrix
// from its texture copy (texture.go's shadow), never from its storage
// buffer; and there device memory is host memory. Keeping both doubled
// the resident weights of an inference process (GPT-2 124M f16: ~250 MB
// of buffers plus ~250 MB of textures). SettleWeight makes the texture the
// matrix's only copy: it packs the texture now and destroys the buffer.
//
// Which kernels read a settled tensor: the texture matmuls (MatMul,
// MatMulGELU, MatMulKVStore with f32/f16 weights, and with quantized
// weights the texture mat-vec and the unpack-then-matmul prefill), all of
// which go through weightTexture. Everything else binds the storage
// buffer (Embed's gather, the register/tile/gemv kernels a non-texture
// variant or BatchInvariant quantized MatMul would run, MatMulBackward,
// Copy, Write, ReadF32): on a settled tensor those panic, or return an
// error, saying that the tensor is held only as its texture; never a read
// of a freed buffer. So only the caller knows when to settle: an inference
// model's layer matrices (model.UploadReleasing), not wte (Embed gathers
// from it) and not training parameters (written and read back every step).

// WeightSettler is a backend that can keep a weight matrix as the one copy
// its inference kernels read (WebGPU on CPU adapters).
type WeightSettler interface {
	// SettleWeight makes the device's copy for MatMul's w the only one,
	// dropping the other; settled is false (and nothing changes) where
	// the backend keeps a single copy anyway or MatMul would still read
	// the other. After a settle, t is MatMul's w only: see resident.go.
	SettleWeight(t Tensor) (settled bool, err error)
}

// SettleWeight calls b's SettleWeight if b is a WeightSettler; otherwise it
// reports false.
func SettleWeight(b Backend, t Tensor) (bool, error) {
	if s, ok := b.(WeightSettler); ok {
		return s.SettleWeight(t)
	}
	return false, nil
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

// settles reports whether MatMul with w of dtype dt and row length k runs
// the texture kernels on this backend for every M (so that a settled w is
// never asked for its buffer).
func (w *WebGPU) settles(dt DType, k int) bool {
	if !w.HasTexRead || w.MatMulVariant != MatMulTex || k < 1 {
		return false
	}
	lim := int(w.Limits.MaxTextureDimension2D)
	if dt.Quantized() {
		// matMulQuantTex's conditions; BatchInvariant (the server) runs
		// the register kernels from the buffer instead.
		return !w.BatchInvariant && k/4 <= lim
	}
	xkt := texTexels(dt, k)
	if dt == F16 {
		xkt *= 2
	}
	return (dt == F32 || dt == F16) && xkt <= lim
}

// SettleWeight packs wt's texture copy and destroys its storage buffer,
// where the texture matmuls are what reads it (see resident.go); it
// reports false, changing nothing, elsewhere (GPUs, the browser's
// register kernels, a matrix too large for a texture, quantized weights
// under BatchInvariant). wt must be a 2-D matrix already written.
func (w *WebGPU) SettleWeight(wt Tensor) (bool, error) {
	t := w.t(wt)
	if t.tex != nil {
		return true, nil
	}
	if len(t.shape) != 2 || !w.settles(t.dt, t.shape[1]) {
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
	w.settled[s.tex] = true
	w.pool.destroy(t.buf)
	t.buf, t.tex = nil, s
	return true, nil
}

// heldAsTexture is the message for an op that needs the storage buffer of
// a settled weight.
func heldAsTexture(op string, t *tensor) string {
	return fmt.Sprintf("gpu: %s: the %v%v weight is held only as its texture copy (SettleWeight), "+
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
