package gpu

// Counts is how much a backend has recorded since it was opened: kernel
// dispatches, compute passes (WebGPU: dispatches share one pass until a
// copy, a timestamp or the end of a command buffer closes it), command
// buffers submitted, and the bytes read back to the host and written from
// it (each a round trip to the device, over the bus on a discrete GPU). A
// benchmark reads them before and after a step (model.Bench: dispatches
// per decoded token); the difference is what the step recorded. The
// counts only grow.
type Counts struct {
	Dispatches   uint64 `json:"dispatches"`
	Passes       uint64 `json:"passes"`
	Submits      uint64 `json:"submits"`
	ReadBytes    uint64 `json:"read_bytes"`
	WrittenBytes uint64 `json:"written_bytes"`
}

// Sub is c - o, field by field: what was recorded between two readings.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.Dispatches - o.Dispatches, c.Passes - o.Passes, c.Submits - o.Submits,
		c.ReadBytes - o.ReadBytes, c.WrittenBytes - o.WrittenBytes}
}

// Counter is a backend that counts its work (WebGPU does; the reference
// backend records nothing to count).
type Counter interface {
	Counts() Counts
}

// Counts returns the dispatches, passes and submits recorded so far
// (empty dispatches, of an empty tensor, are not recorded and not counted).
func (d *Device) Counts() Counts { return d.rec.counts }
