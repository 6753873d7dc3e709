package gpu

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
)

// A device that every request was refused is reported once: what was
// requested (the limits beyond WebGPU's defaults), that the adapter
// refused it, and the binding's reason once, its misspelling corrected;
// the browser showed "request device: adapter limits: no WebGPU device
// avaliable; needed limits: no WebGPU device avaliable; ..." six times.
func TestRefusedDeviceError(t *testing.T) {
	needed := wgpu.DefaultLimits()
	needed.MaxBufferSize = 1 << 30
	needed.MaxComputeInvocationsPerWorkgroup = 1024
	lib := errors.New("no WebGPU device avaliable")
	same := &refusedError{needed: needed}
	for _, l := range []string{"adapter", "needed", "default"} {
		same.tries = append(same.tries, deviceTry{l, "", lib})
	}
	err := fmt.Errorf("gpu: adapter %q %w", "swiftshader", same)
	msg := err.Error()
	want := `gpu: adapter "swiftshader" refused every device requested: adapter limits, then needed limits, then default limits ` +
		`(needed limits beyond WebGPU's defaults: maxBufferSize=1073741824, maxComputeInvocationsPerWorkgroup=1024); ` +
		`reason: no WebGPU device available`
	if msg != want {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
	if !errors.Is(err, lib) {
		t.Error("the binding's error is not wrapped")
	}

	// Distinct reasons are each given once, with the requests they answered.
	other := errors.New("limit maxBufferSize exceeds the adapter's")
	mixed := &refusedError{needed: wgpu.DefaultLimits(), tries: []deviceTry{
		{"adapter", "shader-f16+timestamp-query", other},
		{"needed", "shader-f16+timestamp-query", lib},
		{"default", "", lib},
	}}
	msg = mixed.Error()
	want = "refused every device requested: adapter limits with shader-f16+timestamp-query, then needed limits with shader-f16+timestamp-query, " +
		"then default limits; reasons: limit maxBufferSize exceeds the adapter's (adapter limits with shader-f16+timestamp-query); " +
		"no WebGPU device available (needed limits with shader-f16+timestamp-query, default limits)"
	if msg != want {
		t.Errorf("message\n%s\nwant\n%s", msg, want)
	}
	if strings.Contains(msg, "avaliable") {
		t.Error("misspelling kept")
	}
}
