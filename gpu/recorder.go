package gpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// recorder accumulates dispatches into one command encoder; Flush submits
// them as one command buffer. The first error since the last flush is kept
// and returned by Flush, attributed to its kernel.
type recorder struct {
	d   *Device
	enc *wgpu.CommandEncoder
	n   int   // dispatches in the open encoder
	err error // first error since the last flush

	pendingFree []*Buffer                // freed while the open encoder may still use them
	pendingTex  []*texture               // the same for textures, destroyed at the next flush
	pass        *wgpu.ComputePassEncoder // the open compute pass (nil: none)
	passKernel  string                   // the last kernel recorded into it
	counts      Counts                   // recorded since the device opened (Device.Counts)
}

// maxDispatchesPerSubmit bounds how much work one command buffer holds, so
// a long recording does not starve the driver's watchdog.
const maxDispatchesPerSubmit = 4096

func (r *recorder) encoder() (*wgpu.CommandEncoder, error) {
	r.endPass()
	return r.passEncoder()
}

// passEncoder is encoder without closing the open pass (for dispatches).
func (r *recorder) passEncoder() (*wgpu.CommandEncoder, error) {
	if r.enc != nil {
		return r.enc, nil
	}
	enc, err := r.d.dev.CreateCommandEncoder(&wgpu.CommandEncoderDescriptor{Label: "chameleon"})
	if err != nil {
		return nil, err
	}
	r.enc = enc
	return enc, nil
}

// endPass closes the open compute pass, if any. Dispatches share one pass
// until something else (a copy, a timestamp, the end of the command
// buffer) needs the encoder: on lavapipe a pass per dispatch costs as much
// as a small kernel. WebGPU makes each dispatch its own synchronisation
// scope, so a dispatch still sees everything the previous ones wrote.
func (r *recorder) endPass() {
	if r.pass == nil {
		return
	}
	if err := passEnd(r.pass); err != nil {
		r.fail(&KernelError{r.passKernel, err})
	}
	r.pass.Release()
	r.pass = nil
}

func (r *recorder) fail(err error) {
	r.d.markLost(err)
	if r.err == nil {
		r.err = err
	}
}

// dispatch records kernel name over the bindings with uniform m on a grid of
// workgroups. Errors are deferred to the next Flush.
func (d *Device) dispatch(name string, nIn, nOut int, bs []binding, m Meta, x, y, z uint32) {
	d.dispatchTex(name, nIn, nOut, bs, nil, m, x, y, z)
}

// dispatchTex is dispatch with textures bound in group 2 as well (none for
// the ordinary kernels).
//
// (Over 80 lines: one dispatch's three bind groups, pass and error scope, in
// the order WebGPU needs them.)
func (d *Device) dispatchTex(name string, nIn, nOut int, bs []binding, ts []texBinding, m Meta, x, y, z uint32) {
	r := d.rec
	if r.err != nil {
		d.nextFlops, d.nextBytes = 0, 0
		return
	}
	if x == 0 || y == 0 || z == 0 {
		d.nextFlops, d.nextBytes = 0, 0
		return // nothing to do (an empty tensor)
	}
	if len(bs) != nIn+nOut {
		panic(fmt.Sprintf("gpu: kernel %s: %d bindings, want %d", name, len(bs), nIn+nOut))
	}
	for i := nIn; i < len(bs); i++ {
		for j := 0; j < nIn; j++ {
			if bs[i].buf == bs[j].buf && bs[i].offset < bs[j].offset+bs[j].size && bs[j].offset < bs[i].offset+bs[i].size {
				panic(fmt.Sprintf("gpu: kernel %s: output binding %d aliases input binding %d; "+
					"WebGPU forbids a buffer bound both read-only and read-write in one dispatch, so ops never run in place", name, i, j))
			}
		}
	}
	maxWG := d.Limits.MaxWorkgroupsPerDimension
	if x > maxWG || y > maxWG || z > maxWG {
		r.fail(&KernelError{name, fmt.Errorf("grid %dx%dx%d exceeds maxComputeWorkgroupsPerDimension %d", x, y, z, maxWG)})
		return
	}
	p, err := d.pipelineTex(name, nIn, nOut, texKinds(ts))
	if err != nil {
		r.fail(err)
		return
	}
	for _, b := range bs[nIn:] {
		b.buf.gen++
	}
	g0, err := d.bindGroup(p, bs)
	if err != nil {
		r.fail(&KernelError{name, err})
		return
	}
	g1, err := d.meta(m)
	if err != nil {
		r.fail(&KernelError{name, err})
		return
	}
	var g2 *wgpu.BindGroup
	if len(ts) > 0 {
		if g2, err = d.texGroup(p, ts); err != nil {
			r.fail(&KernelError{name, err})
			return
		}
	}
	enc, err := r.passEncoder()
	if err != nil {
		r.fail(&KernelError{name, err})
		return
	}
	flops, bytes := d.nextFlops, d.nextBytes
	d.nextFlops, d.nextBytes = 0, 0
	if d.prof != nil {
		if bytes == 0 {
			for _, b := range bs {
				bytes += float64(b.size)
			}
		}
		d.prof.begin(enc, name, flops, bytes)
	}
	if r.pass == nil {
		r.pass = beginPass(enc, name)
		r.counts.Passes++
	}
	pass := r.pass
	r.passKernel = name
	pass.SetPipeline(p.pipe)
	pass.SetBindGroup(0, g0, nil)
	pass.SetBindGroup(1, g1, nil)
	if g2 != nil {
		pass.SetBindGroup(2, g2, nil)
	}
	pass.DispatchWorkgroups(x, y, z)
	r.counts.Dispatches++
	if d.prof != nil {
		// Timestamps are written between passes.
		r.endPass()
		d.prof.end(enc)
	}
	r.n++
	if r.n >= maxDispatchesPerSubmit || (d.prof != nil && d.prof.full()) {
		if err := d.flush(); err != nil {
			r.fail(err)
		}
	}
}

// flush submits the open encoder and waits for the queue to drain.
func (d *Device) flush() error {
	r := d.rec
	r.endPass()
	if r.enc != nil {
		enc := r.enc
		r.enc = nil
		r.n = 0
		if d.prof != nil {
			d.prof.resolve(enc)
		}
		cb, err := enc.Finish(nil)
		enc.Release()
		if err != nil {
			r.fail(fmt.Errorf("gpu: finish command buffer: %w", err))
		} else {
			d.queue.Submit(cb)
			r.counts.Submits++
			cb.Release()
			d.wait()
			if d.prof != nil {
				if err := d.prof.collect(); err != nil {
					r.fail(err)
				}
			}
		}
	}
	for _, b := range r.pendingFree {
		d.pool.put(b)
	}
	r.pendingFree = r.pendingFree[:0]
	for _, t := range r.pendingTex {
		t.release()
	}
	r.pendingTex = r.pendingTex[:0]
	if err := d.Lost(); err != nil {
		r.fail(err)
	}
	err := r.err
	r.err = nil
	return err
}

// Flush submits every recorded dispatch and waits for completion. It
// returns the first error since the last Flush.
func (d *Device) Flush() error { return d.flush() }

// readBytes copies size bytes at offset of b back to the host (flushing
// recorded work first).
func (d *Device) readBytes(b *Buffer, offset, size uint64) ([]byte, error) {
	if size == 0 {
		return nil, d.flush()
	}
	asz := (size + 3) &^ 3
	staging, err := d.takeStaging(asz)
	if err != nil {
		return nil, fmt.Errorf("gpu: readback buffer (%d bytes): %w", asz, err)
	}
	reuse := false // only once mapped and unmapped again
	defer func() { d.putStaging(staging, reuse) }()
	enc, err := d.rec.encoder()
	if err != nil {
		return nil, err
	}
	if err := enc.CopyBufferToBuffer(b.buf, offset, staging.buf, 0, asz); err != nil {
		d.rec.fail(fmt.Errorf("gpu: readback copy: %w", err))
	}
	if err := d.flush(); err != nil {
		return nil, err
	}
	out, err := mapRead(d, staging.buf, asz, size)
	reuse = err == nil
	d.rec.counts.ReadBytes += size
	return out, err
}

// writeBytes uploads data into b at offset. Recorded work that reads b is
// flushed first so the write cannot overtake it.
func (d *Device) writeBytes(b *Buffer, offset uint64, data []byte) error {
	if len(data)%4 != 0 {
		pad := make([]byte, (len(data)+3)&^3)
		copy(pad, data)
		data = pad
	}
	return d.writeRows(b, offset, len(data)/4, 4, func(dst []byte, r0 int) { copy(dst, data[4*r0:]) })
}

// writeChunk bounds one queue write: wgpu copies each write into a staging
// buffer that lives until the queue has run it, so a large tensor goes up
// a piece at a time, the queue drained between pieces, and its upload
// holds at most this much beside the tensor (on a CPU adapter, where all
// of it is host memory, a whole-tensor staging copy was a third of a
// GPT-2 load's peak).
const writeChunk = 1 << 20

// writeRows uploads rows rows of rowBytes bytes each (a multiple of 4) into
// b from offset, fill writing the device bytes of rows r0.. into dst (a
// whole number of rows) a chunk at a time. Recorded work that reads b is
// flushed first so the write cannot overtake it.
func (d *Device) writeRows(b *Buffer, offset uint64, rows, rowBytes int, fill func(dst []byte, r0 int)) error {
	if err := d.flush(); err != nil {
		return err
	}
	b.gen++
	if rows == 0 || rowBytes == 0 {
		return nil
	}
	d.rec.counts.WrittenBytes += uint64(rows * rowBytes)
	per := max(1, writeChunk/rowBytes)
	if n := min(per, rows) * rowBytes; cap(d.writeBuf) < n {
		d.writeBuf = make([]byte, n) // kept: a garbage chunk per tensor was as large as the weights
	}
	buf := d.writeBuf
	for r0 := 0; r0 < rows; r0 += per {
		chunk := buf[:min(per, rows-r0)*rowBytes]
		fill(chunk, r0)
		if err := queueWrite(d.queue, b.buf, offset+uint64(r0*rowBytes), chunk); err != nil {
			return fmt.Errorf("gpu: write buffer: %w", err)
		}
		if r0+per < rows {
			d.queue.Submit() // runs the write, so that wait frees its staging copy
			d.wait()
		}
	}
	return d.Lost()
}

// maxCachedStaging is the largest read-back staging buffer kept for reuse.
const maxCachedStaging = 16 << 20

// staging is a mappable buffer for read-backs and its size.
type staging struct {
	buf  *wgpu.Buffer
	size uint64
}

// takeStaging returns a mappable buffer of at least asz bytes. Natively
// read-back buffers are kept, one per power-of-two size up to
// maxCachedStaging, and reused: creating one costs about a millisecond on
// NVIDIA's Vulkan driver, more than all of a batch-1 decode step's kernels
// on a large GPU, and every decode step reads its tokens back. In the
// browser mapRead destroys the buffer, so each read-back makes its own.
func (d *Device) takeStaging(asz uint64) (staging, error) {
	c := uint64(256)
	for c < asz {
		c *= 2
	}
	if !reuseStaging || c > maxCachedStaging {
		c = asz
	} else if s, ok := d.stagings[c]; ok {
		delete(d.stagings, c)
		return s, nil
	}
	b, err := d.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: "readback", Size: c,
		Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst})
	if err != nil {
		return staging{}, err
	}
	return staging{b, c}, nil
}

// putStaging gives back a buffer from takeStaging: kept for reuse if
// reuse (it was mapped, read and unmapped), else released.
func (d *Device) putStaging(s staging, reuse bool) {
	if !reuse || !reuseStaging || s.size > maxCachedStaging || d.Lost() != nil {
		s.buf.Release()
		return
	}
	if old, ok := d.stagings[s.size]; ok {
		old.buf.Release()
	}
	if d.stagings == nil {
		d.stagings = map[uint64]staging{}
	}
	d.stagings[s.size] = s
}
