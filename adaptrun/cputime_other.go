//go:build !unix

package adaptrun

// cpuSeconds cannot read the process's CPU time on this system.
func cpuSeconds() (float64, bool) { return 0, false }
