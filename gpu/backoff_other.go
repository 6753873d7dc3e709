//go:build !linux && !js

package gpu

import "time"

// shortSleep is time.Sleep where no finer sleep is wired up.
func shortSleep(d time.Duration) { time.Sleep(d) }
