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
	gputest.RunCases(t, conformance.Cases, ref.New(), w)
}

// TestGPT2 runs the self-check's GPT-2-size cases, as `chameleon
// selfcheck` does, so that what the CLI reports is itself tested.
func TestGPT2(t *testing.T) {
	gputest.RunCases(t, conformance.GPT2, ref.New(), gputest.Backend(t))
}
