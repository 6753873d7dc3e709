package conformance_test

import (
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestWebGPU runs the whole suite on the WebGPU backend against the reference.
func TestWebGPU(t *testing.T) {
	w := gputest.Backend(t)
	t.Logf("adapter: %s", w.Name())
	conformance.Run(t, ref.New(), w)
}
