//go:build js

package main

import (
	"sync/atomic"
	"syscall/js"
)

// running is the stop flag of the generate call in progress; nil when
// none runs. stop() sets it; the call's GenerateOptions.Cancel reads it
// between decode steps (the generating goroutine yields to the page's
// event loop at every readback, so a click lands between two steps).
var running atomic.Pointer[atomic.Bool]

// cancellable makes the calling generate the running one: cancel reports
// whether stop() was called since, and done (deferred) ends its turn.
func cancellable() (cancel func() bool, done func()) {
	flag := new(atomic.Bool)
	running.Store(flag)
	return flag.Load, func() { running.CompareAndSwap(flag, nil) }
}

// jsStop: stop() -> bool. It asks the running generate call to end after
// its current step (its promise resolves with the tokens so far, each
// unfinished sequence with finish "cancelled") and says whether one was
// running; with none, it does nothing and returns false.
func jsStop(this js.Value, args []js.Value) any {
	if flag := running.Load(); flag != nil {
		flag.Store(true)
		return true
	}
	return false
}
