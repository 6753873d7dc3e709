//go:build !unix

package serve

// fdLimit: unknown on this system.
func fdLimit() int { return 0 }
