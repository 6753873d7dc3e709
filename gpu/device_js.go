//go:build js

package gpu

import (
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// In the browser the device comes from navigator.gpu through the same
// calls as natively; what differs is below. Readback awaits a promise, so
// every read must run on a goroutine, never inside a JS callback.

func passEnd(p *wgpu.ComputePassEncoder) error {
	p.End()
	return nil
}

func beginPass(enc *wgpu.CommandEncoder, label string) *wgpu.ComputePassEncoder {
	return enc.BeginComputePass(nil)
}

// adapterFeatures: the js backend does not list an adapter's features.
func adapterFeatures(a *wgpu.Adapter) []string { return nil }

// hasFeature: the js backend cannot ask, so optional features stay off.
func hasFeature(a *wgpu.Adapter, f wgpu.FeatureName) bool { return false }

// mapRead maps staging (awaiting the browser's promise) and copies it out.
func mapRead(d *Device, staging *wgpu.Buffer, asz, size uint64) ([]byte, error) {
	var status wgpu.BufferMapAsyncStatus = 0xffffffff
	if err := staging.MapAsync(wgpu.MapModeRead, 0, asz, func(s wgpu.BufferMapAsyncStatus) { status = s }); err != nil {
		return nil, fmt.Errorf("gpu: map readback buffer: %w", err)
	}
	if status != wgpu.BufferMapAsyncStatusSuccess {
		return nil, fmt.Errorf("gpu: map readback buffer: %v", status)
	}
	out := make([]byte, size)
	copy(out, staging.GetMappedRange(0, uint(asz))[:size])
	staging.Unmap()
	return out, nil
}
