package cluster

import (
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestConformance runs the clustering kernels' suite (Conformance) on the
// WebGPU adapter (lavapipe without a GPU; the test fails, never skips,
// without an adapter) against the plain-Go reference: fresh seeds logged
// (replay with CHAMELEON_SEED).
func TestConformance(t *testing.T) {
	gputest.RunCases(t, Conformance(), ref.New(), gputest.Backend(t))
}
