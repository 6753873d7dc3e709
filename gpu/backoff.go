//go:build !js

package gpu

import (
	"runtime"
	"time"
)

// backoff paces a polling loop: spin briefly (GPU work often finishes in
// microseconds), then sleep in steps that start at 50 us and double every
// 8 polls up to a millisecond, so a short wait ends soon after the work
// and a long one polls rarely (each poll and wake-up takes CPU from a CPU
// adapter's own threads: polling every 50 us throughout made a 50 ms
// matmul on lavapipe ~25% slower). The steps are shortSleep, not
// time.Sleep: the Go runtime rounds a sleep under a millisecond up to one
// when it has nothing else to run (a 50 us time.Sleep took a median 1.1 ms
// on dev-2c), which added ~1 ms to every wait for a short submission.
func backoff(i int) {
	if i < 64 {
		runtime.Gosched()
		return
	}
	step := 50 * time.Microsecond << min((i-64)/8, 5)
	shortSleep(min(step, time.Millisecond))
}
