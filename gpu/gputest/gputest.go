// Package gputest opens the WebGPU device for tests. A test that needs the
// GPU fails, with a hint, when no adapter can be opened: the GPU half of
// the suite is never silently skipped.
package gputest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

var (
	once sync.Once
	dev  *gpu.Device
	err  error
)

// Device opens (once per test binary) the adapter chosen by
// CHAMELEON_ADAPTER, else the best one, and fails t if there is none.
func Device(t testing.TB) *gpu.Device {
	t.Helper()
	once.Do(func() {
		// Under heavy load lavapipe occasionally refuses the first device
		// request; a couple of retries keep the suite from failing at random
		// while a machine without any adapter still fails every time.
		for try := 0; try < 3; try++ {
			if dev, err = gpu.Open(gpu.Options{}); err == nil || errors.Is(err, gpu.ErrNoAdapter) {
				return
			}
			time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatalf("no WebGPU device: %v\n(make test installs mesa-vulkan-drivers for a CPU adapter; run `chameleon devices`)", err)
	}
	return dev
}

// Backend returns the WebGPU backend on the test device.
func Backend(t testing.TB) *gpu.WebGPU {
	w := gpu.NewWebGPU(Device(t))
	// The fused epilogue kernels are off by default (WebGPU.FuseEpilogues);
	// the tests run them, and TestFusedDecodeMatchesReference also runs the
	// default (unfused) decode against the reference.
	w.FuseEpilogues = true
	return w
}

// RunCases runs each conformance case on got against ref as a subtest,
// through conformance.Check (the runner the CLI's self-check uses), with a
// fresh seed per case (CHAMELEON_SEED replays one), and reports its log
// lines and failures.
func RunCases(t *testing.T, cases []conformance.Case, ref, got gpu.Backend) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := conformance.Check(c, ref, got, conformance.Seed())
			for _, l := range r.Logs {
				t.Log(l)
			}
			for _, f := range r.Failures {
				t.Error(f)
			}
		})
	}
}
