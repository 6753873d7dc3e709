package gpu

import "fmt"

// Packages that add ops to the Backend set (cluster's clustering kernels,
// adapt's low-rank updates) follow one pattern, the one this package uses:
//   - an Ops interface that embeds Backend (memory ops and the base ops
//     come from the backend the extra kernels run on) and declares the
//     extra ops with their shapes;
//   - a WebGPU implementation that embeds *WebGPU and dispatches WGSL
//     kernels, and a plain-Go reference that embeds a Host and computes on
//     its tensors' host slices;
//   - a constructor that picks between them with Select, so no package
//     outside gpu needs to know gpu/ref's concrete types;
//   - a conformance test that runs both on the same random inputs through
//     gpu/conformance's Pair.

// Host is the optional interface of a Backend whose tensors live in host
// memory as plain slices: the plain-Go reference (gpu/ref). Reference
// implementations of added ops read and write those slices.
type Host interface {
	Backend
	// HostF32 returns the values of an F32 or F16 tensor of this backend
	// (F16 values already rounded to half precision). The slice aliases
	// the tensor: writing it writes the tensor. It panics for a tensor of
	// another backend or an I32 tensor.
	HostF32(t Tensor) []float32
	// HostI32 returns the values of an I32 tensor, aliased the same way.
	HostI32(t Tensor) []int32
}

// Select returns the implementation of an op extension that fits backend
// b: onGPU for the WebGPU backend, onHost for a host backend (the
// reference). Any other backend is an error that names it.
func Select[T any](b Backend, onGPU func(*WebGPU) T, onHost func(Host) T) (T, error) {
	switch t := b.(type) {
	case *WebGPU:
		return onGPU(t), nil
	case Host:
		return onHost(t), nil
	}
	var zero T
	return zero, fmt.Errorf("gpu: backend %s (%T) is neither WebGPU nor a host backend: no implementation of its added ops", b.Name(), b)
}
