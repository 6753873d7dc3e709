//go:build unix

package adaptrun

import (
	"syscall"
	"time"
)

// cpuSeconds is this process's user and system CPU time, all threads (an
// in-process CPU adapter's workers, such as lavapipe's, included); ok is
// false where it cannot be read.
func cpuSeconds() (float64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), true
}
