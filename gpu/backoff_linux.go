//go:build linux

package gpu

import (
	"syscall"
	"time"
)

// shortSleep blocks the calling thread for d in the kernel (nanosleep),
// whose timers keep microseconds.
func shortSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
