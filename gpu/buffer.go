package gpu

import (
	"fmt"
	"math/bits"

	"github.com/cogentcore/webgpu/wgpu"
)

// Buffer is one storage buffer from the pool. Creating and binding buffers
// is expensive on WebGPU, so freed buffers are kept by size class and reused.
type Buffer struct {
	buf  *wgpu.Buffer
	size uint64 // allocated size (its size class)
	id   uint64 // unique, stable: keys the bind-group cache
	gen  uint64 // bumped whenever its contents may change (texture copies compare it)
}

type bufferPool struct {
	d      *Device
	free   map[uint64][]*Buffer // size class -> free buffers
	nextID uint64
	live   uint64 // bytes allocated from the driver, in use or free
	all    []*Buffer
}

func newBufferPool(d *Device) *bufferPool {
	return &bufferPool{d: d, free: map[uint64][]*Buffer{}}
}

// sizeClass rounds n up to a multiple of 256 bytes with at most three
// significant bits, so a reused buffer wastes at most 25%.
func sizeClass(n uint64) uint64 {
	if n < 256 {
		return 256
	}
	n = (n + 255) &^ 255
	top := 63 - bits.LeadingZeros64(n)
	if top < 10 {
		return n
	}
	step := uint64(1) << (top - 2)
	return (n + step - 1) / step * step
}

const storageUsage = wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst

// get returns a storage buffer of at least n bytes.
func (p *bufferPool) get(n uint64, label string) (*Buffer, error) {
	c := sizeClass(n)
	if n > p.d.Limits.MaxBufferSize {
		return nil, fmt.Errorf("gpu: %s: %d bytes exceeds the device's maxBufferSize of %d", label, n, p.d.Limits.MaxBufferSize)
	}
	if c > p.d.Limits.MaxBufferSize {
		c = n
	}
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		b.gen++
		return b, nil
	}
	if err := p.d.Lost(); err != nil {
		return nil, err
	}
	buf, err := p.d.dev.CreateBuffer(&wgpu.BufferDescriptor{Label: label, Size: c, Usage: storageUsage})
	if err != nil {
		return nil, fmt.Errorf("gpu: create buffer %s (%d bytes): %w", label, c, err)
	}
	p.nextID++
	b := &Buffer{buf: buf, size: c, id: p.nextID}
	p.live += c
	p.all = append(p.all, b)
	return b, nil
}

func (p *bufferPool) put(b *Buffer) {
	p.free[b.size] = append(p.free[b.size], b)
}

func (p *bufferPool) release() {
	for _, b := range p.all {
		b.buf.Release()
	}
	p.all = nil
	p.free = map[uint64][]*Buffer{}
}
