package gpu

import "fmt"

// Copy copies src into dst on the device (same dtype and element count).
// F32 and I32 tensors whose size is a multiple of 4 elements use the vec4
// copy kernel; anything else is copied by the queue.
func (w *WebGPU) Copy(dst, src Tensor) {
	s, d := w.t(src), w.t(dst)
	for _, t := range []*tensor{s, d} {
		if t.buf == nil {
			panic(heldAsTexture("Copy", t))
		}
	}
	if s.dt != d.dt || s.bytes != d.bytes {
		panic(fmt.Sprintf("gpu: Copy: %v%v into %v%v", s.dt, s.shape, d.dt, d.shape))
	}
	if s.bytes%16 == 0 {
		n := int(s.bytes / 16)
		gx, gy := w.grid1(ceilDiv(n, 256))
		w.dispatch("copy", 1, 1, []binding{w.bind(src), w.bind(dst)}, Meta{n}, gx, gy, 1)
		return
	}
	enc, err := w.rec.encoder()
	if err != nil {
		w.rec.fail(err)
		return
	}
	d.buf.gen++
	if err := enc.CopyBufferToBuffer(s.buf.buf, 0, d.buf.buf, 0, s.bytes); err != nil {
		w.rec.fail(fmt.Errorf("gpu: Copy: %w", err))
	}
}
