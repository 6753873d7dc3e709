package gpu

// Exported dispatch for packages above gpu (cluster, adapt, train) that
// bring kernels of their own: the kernel is a file of package wgsl, bound
// with the same conventions as every op here (tensors in group 0, inputs
// read-only first, outputs read-write after, a Meta uniform in group 1).

// Dispatch records kernel over whole-tensor bindings: inputs read-only,
// outputs read-write, meta as its uniform, on a grid of x*y*z workgroups.
// Errors are reported by the next Flush or read, naming the kernel.
func (w *WebGPU) Dispatch(kernel string, inputs, outputs []Tensor, meta Meta, x, y, z uint32) {
	bs := make([]binding, 0, len(inputs)+len(outputs))
	for _, t := range inputs {
		bs = append(bs, w.bind(t))
	}
	for _, t := range outputs {
		bs = append(bs, w.bind(t))
	}
	w.dispatch(kernel, len(inputs), len(outputs), bs, meta, x, y, z)
}

// Grid1 splits n workgroups into an (x, y) grid within the device's
// per-dimension limit; kernels recover the linear workgroup id as
// wid.y * nwg.x + wid.x.
func (w *WebGPU) Grid1(n int) (uint32, uint32) { return w.grid1(n) }
