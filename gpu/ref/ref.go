// Package ref is the plain-Go reference Backend: every op written as the
// simplest loop that computes it, in float32 with float64 accumulation
// where a sum runs long. It is the ground truth the WebGPU kernels are
// checked against, and the fallback when no adapter can be opened.
//
// Dimension legend as in package gpu: B batch, T time, C channels, H heads,
// D head size, V vocabulary, M rows, K inner, N columns.
package ref

import (
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// Backend is the reference implementation of gpu.Backend.
type Backend struct{}

// New returns the reference backend.
func New() *Backend { return &Backend{} }

// Name identifies the backend.
func (*Backend) Name() string { return "ref: plain Go" }

// Tensor holds its values on the host. F16 tensors keep float32 values
// rounded to half precision, and quantized tensors (Q8_0, Q4_0, Q4_K) their
// dequantized weights: exactly the values a GPU reads.
type Tensor struct {
	shape []int
	dt    gpu.DType
	F     []float32 // F32, F16 and quantized tensors' data
	I     []int32   // I32 data
}

func (t *Tensor) Shape() []int     { return t.shape }
func (t *Tensor) DType() gpu.DType { return t.dt }

func tt(x gpu.Tensor) *Tensor {
	t, ok := x.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("ref: tensor %T is not a reference tensor", x))
	}
	return t
}

// f returns the float data of x (F32 or F16).
func f(x gpu.Tensor) []float32 {
	t := tt(x)
	if t.dt == gpu.I32 {
		panic("ref: float data of an i32 tensor")
	}
	return t.F
}

// ints returns the int data of an I32 tensor.
func ints(x gpu.Tensor) []int32 {
	t := tt(x)
	if t.dt != gpu.I32 {
		panic("ref: int data of a float tensor")
	}
	return t.I
}

// Alloc returns a zeroed tensor.
func (*Backend) Alloc(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
	if err := gpu.CheckQuantShape(dt, shape); err != nil {
		return nil, err
	}
	n := gpu.Numel(shape)
	t := &Tensor{shape: slices.Clone(shape), dt: dt}
	if dt == gpu.I32 {
		t.I = make([]int32, n)
	} else {
		t.F = make([]float32, n)
	}
	return t, nil
}

// WriteAt implements gpu.RangeWriter.
func (*Backend) WriteAt(x gpu.Tensor, off int, data any) error {
	if _, err := gpu.CheckWriteAt(x, off, data); err != nil {
		return err
	}
	t := tt(x)
	switch d := data.(type) {
	case []float32:
		copy(t.F[off:], d)
	case []int32:
		copy(t.I[off:], d)
	}
	return nil
}

// Write copies host data into t ([]uint16 halves into an F16 tensor too).
func (*Backend) Write(x gpu.Tensor, data any) error {
	t := tt(x)
	n := gpu.Numel(t.shape)
	if h, ok := data.([]uint16); ok && t.dt == gpu.F16 {
		if len(h) != n {
			return fmt.Errorf("ref: Write: f16 tensor %v needs %d halves, got %d", t.shape, n, len(h))
		}
		for i, v := range h {
			t.F[i] = gpu.F16ToF32(v)
		}
		return nil
	}
	switch t.dt {
	case gpu.F32, gpu.F16:
		v, ok := data.([]float32)
		if !ok || len(v) != n {
			return fmt.Errorf("ref: Write: %v tensor %v needs []float32 of length %d", t.dt, t.shape, n)
		}
		copy(t.F, v)
		if t.dt == gpu.F16 {
			for i := range t.F {
				t.F[i] = gpu.RoundF16(t.F[i])
			}
		}
	case gpu.I32:
		v, ok := data.([]int32)
		if !ok || len(v) != n {
			return fmt.Errorf("ref: Write: i32 tensor %v needs []int32 of length %d", t.shape, n)
		}
		copy(t.I, v)
	default:
		fm, ok := t.dt.Quant()
		if !ok {
			return fmt.Errorf("ref: Write: unknown dtype %v", t.dt)
		}
		raw, err := gpu.QuantBlocks(t.dt, t.shape, data)
		if err != nil {
			return err
		}
		quant.Dequantize(fm, t.F, raw)
	}
	return nil
}

// ReadF32 returns a copy of a float tensor's values.
func (*Backend) ReadF32(x gpu.Tensor) ([]float32, error) {
	t := tt(x)
	if t.dt == gpu.I32 {
		return nil, fmt.Errorf("ref: ReadF32 of an i32 tensor")
	}
	return slices.Clone(t.F), nil
}

// ReadI32 returns a copy of an int tensor's values.
func (*Backend) ReadI32(x gpu.Tensor) ([]int32, error) {
	t := tt(x)
	if t.dt != gpu.I32 {
		return nil, fmt.Errorf("ref: ReadI32 of a %v tensor", t.dt)
	}
	return slices.Clone(t.I), nil
}

// Free drops the tensor's data.
func (*Backend) Free(x gpu.Tensor) {
	t := tt(x)
	t.F, t.I = nil, nil
}

// Flush does nothing: reference ops run when called.
func (*Backend) Flush() error { return nil }

func rowsCols(t gpu.Tensor) (int, int) {
	s := t.Shape()
	if len(s) == 0 {
		return 1, 1
	}
	return gpu.Numel(s[:len(s)-1]), s[len(s)-1]
}

var _ gpu.Backend = (*Backend)(nil)

// HostF32 returns the values of an F32 or F16 reference tensor, aliased
// (gpu.Host).
func (*Backend) HostF32(x gpu.Tensor) []float32 { return f(x) }

// HostI32 returns the values of an I32 reference tensor, aliased
// (gpu.Host).
func (*Backend) HostI32(x gpu.Tensor) []int32 { return ints(x) }

var _ gpu.Host = (*Backend)(nil)
