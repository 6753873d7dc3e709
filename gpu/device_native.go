//go:build !js

package gpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// cpuMatMulVariant is the matmul family CPU adapters get by default: the
// texture kernels natively (lavapipe); in the browser the register kernels,
// whose speed on SwiftShader has not been compared.
const cpuMatMulVariant = MatMulTex

// reuseStaging: read-back buffers are kept for reuse (takeStaging).
const reuseStaging = true

// platformAdapterInfo: wgpu-native's GetInfo says everything natively.
func platformAdapterInfo(*wgpu.Adapter, *AdapterInfo) {}

func passEnd(p *wgpu.ComputePassEncoder) error { return p.End() }

func beginPass(enc *wgpu.CommandEncoder, label string) *wgpu.ComputePassEncoder {
	return enc.BeginComputePass(&wgpu.ComputePassDescriptor{Label: label})
}

func adapterFeatures(a *wgpu.Adapter) []string {
	var out []string
	for _, f := range a.EnumerateFeatures() {
		out = append(out, f.String())
	}
	return out
}

func hasFeature(a *wgpu.Adapter, f wgpu.FeatureName) bool { return a.HasFeature(f) }

// queueWrite is Queue.WriteBuffer (see device_js.go for why it is not
// called directly).
func queueWrite(q *wgpu.Queue, b *wgpu.Buffer, offset uint64, data []byte) error {
	return q.WriteBuffer(b, offset, data)
}

// mapRead maps staging and returns its first size bytes. Natively the map
// completes during a blocking device poll.
func mapRead(d *Device, staging *wgpu.Buffer, asz, size uint64) ([]byte, error) {
	var status wgpu.BufferMapAsyncStatus = 0xffffffff
	if err := staging.MapAsync(wgpu.MapModeRead, 0, asz, func(s wgpu.BufferMapAsyncStatus) { status = s }); err != nil {
		return nil, fmt.Errorf("gpu: map readback buffer: %w", err)
	}
	// The map completes during a poll once the copy is done; as in wait,
	// never a blocking poll (see there).
	for i := 0; status == 0xffffffff; i++ {
		d.dev.Poll(false, nil)
		if err := d.Lost(); err != nil {
			return nil, err
		}
		if status == 0xffffffff {
			backoff(i)
		}
	}
	if status == wgpu.BufferMapAsyncStatusDeviceLost {
		d.mu.Lock()
		d.lost = "buffer map reported the device lost"
		d.mu.Unlock()
		return nil, d.Lost()
	}
	if status != wgpu.BufferMapAsyncStatusSuccess {
		return nil, fmt.Errorf("gpu: map readback buffer: %v", status)
	}
	out := make([]byte, size)
	copy(out, staging.GetMappedRange(0, uint(asz))[:size])
	staging.Unmap()
	return out, nil
}

// wait blocks until the queue is empty (the browser's wait, which awaits
// a promise instead, is in device_js.go). It polls without blocking in
// wgpu: a blocking poll gives up after a few seconds and wgpu-core then
// treats every submission as finished anyway, recycling buffers the driver
// is still using (on lavapipe a cold shader compile alone can take that
// long, and the process then reads zeros or crashes). A non-blocking poll
// reads the real fence, so it is only true once the work is done.
func (d *Device) wait() {
	for i := 0; !d.dev.Poll(false, nil); i++ {
		if d.Lost() != nil {
			return
		}
		backoff(i)
	}
}
