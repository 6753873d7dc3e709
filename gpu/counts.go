package gpu

// Counts is how much a backend has recorded since it was opened: kernel
// dispatches, compute passes (WebGPU: dispatches share one pass until a
// copy, a timestamp or the end of a command buffer closes it) and command
// buffers submitted. A benchmark reads them before and after a step
// (model.Bench: dispatches per decoded token); the difference is what the
// step recorded. The counts only grow.
type Counts struct {
	Dispatches uint64 `json:"dispatches"`
	Passes     uint64 `json:"passes"`
	Submits    uint64 `json:"submits"`
}

// Sub is c - o, field by field: what was recorded between two readings.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.Dispatches - o.Dispatches, c.Passes - o.Passes, c.Submits - o.Submits}
}

// Counter is a backend that counts its work (WebGPU does; the reference
// backend records nothing to count).
type Counter interface {
	Counts() Counts
}

// Counts returns the dispatches, passes and submits recorded so far
// (empty dispatches, of an empty tensor, are not recorded and not counted).
func (d *Device) Counts() Counts { return d.rec.counts }
