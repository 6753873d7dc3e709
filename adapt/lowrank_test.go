package adapt

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestConformance runs the adaptation ops' suite (Conformance) on the
// WebGPU adapter (failing, never skipping, without one) against the
// plain-Go reference, fresh seeds logged (replay with CHAMELEON_SEED).
func TestConformance(t *testing.T) {
	gputest.RunCases(t, Conformance(), ref.New(), gputest.Backend(t))
}

// pair opens the WebGPU backend (failing, never skipping, without an
// adapter) and pairs it with the reference under a fresh, logged seed.
func pair(t *testing.T) (*conformance.Pair, Ops, *WebGPUOps) {
	t.Helper()
	w := gputest.Backend(t)
	p := conformance.NewPair(t, ref.New(), w)
	return p, New(p.Ref).(*RefOps), &WebGPUOps{WebGPU: p.Got.(*gpu.WebGPU)}
}

// TestLogitsLimits checks that logits larger than one storage binding are
// refused with an error (not a crash) and that mismatched operands panic
// with an "adapt: " or "gpu: " message on both backends.
func TestLogitsLimits(t *testing.T) {
	w := gputest.Backend(t)
	ops := New(w)
	m, v := int(w.Limits.MaxStorageBufferBindingSize/(4*50257))+1, 50257
	alloc := func(be gpu.Backend, dt gpu.DType, shape ...int) gpu.Tensor { return gpu.Must(be.Alloc(dt, shape...)) }
	if uint64(4*m*v) > w.Limits.MaxBufferSize {
		// Such logits cannot even be allocated here: Alloc refuses them.
		if _, err := w.Alloc(gpu.F32, m, v); err == nil {
			t.Errorf("a %d-byte tensor was allocated over the device's %d-byte buffer limit", 4*m*v, w.Limits.MaxBufferSize)
		}
	} else {
		dst, h, wt := alloc(w, gpu.F32, m, v), alloc(w, gpu.F32, m, 3), alloc(w, gpu.F16, v, 3)
		f := NewFactors(alloc(w, gpu.F32, 1, 1, 3), alloc(w, gpu.F32, 1, v, 1))
		err := ops.Logits(dst, h, wt, nil, f, nil, 1)
		if err == nil || !strings.Contains(err.Error(), "storage binding") {
			t.Errorf("logits of %d x %d f32: error %v, want one about the storage binding", m, v, err)
		}
		for _, x := range []gpu.Tensor{dst, h, wt, f.A, f.B} {
			w.Free(x)
		}
	}
	for _, be := range []gpu.Backend{ref.New(), w} {
		o := New(be)
		h, wt, d := alloc(be, gpu.F32, 4, 6), alloc(be, gpu.F32, 5, 6), alloc(be, gpu.F32, 4, 5)
		good := NewFactors(alloc(be, gpu.F32, 2, 3, 6), alloc(be, gpu.F32, 2, 5, 3))
		wrongC := NewFactors(alloc(be, gpu.F32, 2, 3, 7), alloc(be, gpu.F32, 2, 5, 3))
		for what, call := range map[string]func(){
			"factor width": func() { o.Logits(d, h, wt, nil, wrongC, nil, 1) },
			"cluster size": func() { o.Logits(d, h, wt, nil, good, alloc(be, gpu.I32, 3), 1) },
			"cluster type": func() { o.Logits(d, h, wt, nil, good, alloc(be, gpu.F32, 4), 1) },
			"u shape":      func() { o.LowRankU(alloc(be, gpu.F32, 4, 2), h, good, nil, 1) },
			"A/B ranks":    func() { NewFactors(alloc(be, gpu.F32, 2, 3, 6), alloc(be, gpu.F32, 2, 5, 4)) },
			"packed width": func() { PackedFactors(alloc(be, gpu.F32, 2, 10), 3, 6, 5) },
		} {
			msg := func() (msg string) {
				defer func() { msg = fmt.Sprint(recover()) }()
				call()
				return
			}()
			if !strings.HasPrefix(msg, "adapt: ") && !strings.HasPrefix(msg, "gpu: ") {
				t.Errorf("%s: %s: panic %q, want an adapt: or gpu: message", be.Name(), what, msg)
			}
		}
	}
}
