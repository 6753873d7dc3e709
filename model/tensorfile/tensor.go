package tensorfile

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// Tensor is one tensor to write: raw little-endian Data of the given dtype
// and shape (row-major, outermost first; empty for a scalar).
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	// Produce, when set and Data is nil, gives the data when the writer
	// reaches the tensor (WriteGGUF), so a file of many large tensors is
	// written holding one of them at a time. What it returns must have the
	// size the dtype and shape give.
	Produce func() ([]byte, error)
}

// FromFloat32 builds a Tensor by narrowing values to dt, which must be F32,
// F16 or BF16 (rounding to nearest, ties to even), or by quantizing them to
// Q8_0, Q4_0 or Q4_K (gpu/quant; the innermost dim must be whole blocks and
// the values finite). len(values) must equal the product of shape.
func FromFloat32(name string, dt DType, shape []int, values []float32) (Tensor, error) {
	if !dt.Float32Decodable() {
		return Tensor{}, fmt.Errorf("tensorfile: tensor %q: FromFloat32 cannot produce dtype %v (only F32, F16, BF16, Q8_0, Q4_0, Q4_K)", name, dt)
	}
	numel := 1
	for _, d := range shape {
		if d < 0 {
			return Tensor{}, fmt.Errorf("tensorfile: tensor %q: negative dim in shape %v", name, shape)
		}
		if d > 0 && numel > math.MaxInt/d {
			return Tensor{}, fmt.Errorf("tensorfile: tensor %q: shape %v overflows", name, shape)
		}
		numel *= d
	}
	if numel != len(values) {
		return Tensor{}, fmt.Errorf("tensorfile: tensor %q: shape %v holds %d values, got %d", name, shape, numel, len(values))
	}
	if f, ok := dt.QuantFormat(); ok {
		if len(shape) == 0 || shape[len(shape)-1]%f.BlockSize() != 0 {
			return Tensor{}, fmt.Errorf("tensorfile: tensor %q: shape %v: rows are not a whole number of %v blocks of %d", name, shape, dt, f.BlockSize())
		}
		data := make([]byte, len(values)/f.BlockSize()*f.BlockBytes())
		if err := quant.Quantize(f, data, values); err != nil {
			return Tensor{}, fmt.Errorf("tensorfile: tensor %q: %w", name, err)
		}
		return Tensor{Name: name, DType: dt, Shape: slices.Clone(shape), Data: data}, nil
	}
	es := int(dt.BlockBytes())
	data := make([]byte, len(values)*es)
	for i, v := range values {
		switch dt {
		case F32:
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		case F16:
			binary.LittleEndian.PutUint16(data[2*i:], F32ToF16(v))
		case BF16:
			binary.LittleEndian.PutUint16(data[2*i:], F32ToBF16(v))
		}
	}
	return Tensor{Name: name, DType: dt, Shape: slices.Clone(shape), Data: data}, nil
}

// checkTensor validates a tensor about to be written: its dtype is known,
// its dims are non-negative and its data has exactly the size its dtype and
// shape require.
func checkTensor(format string, t *Tensor) error {
	_, err := tensorSize(format, t)
	return err
}

// tensorSize checks t's dtype and shape and returns the bytes its data
// takes; t's Data must have that length unless t is produced on write.
func tensorSize(format string, t *Tensor) (uint64, error) {
	if !t.DType.Valid() {
		return 0, fmt.Errorf("%s: tensor %q: invalid dtype %v", format, t.Name, t.DType)
	}
	dims := make([]uint64, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("%s: tensor %q: negative dim in shape %v", format, t.Name, t.Shape)
		}
		dims[i] = uint64(d)
	}
	want, ok, why := byteSize(t.DType, dims, len(dims)-1, math.MaxInt64)
	if !ok {
		return 0, fmt.Errorf("%s: tensor %q: shape %s %v: %s", format, t.Name, shapeString(t.Shape), t.DType, why)
	}
	if t.Data == nil && t.Produce != nil {
		return want, nil // the producer's bytes are checked when they are written
	}
	if uint64(len(t.Data)) != want {
		return 0, fmt.Errorf("%s: tensor %q: %d bytes of data, want %s %v = %d",
			format, t.Name, len(t.Data), shapeString(t.Shape), t.DType, want)
	}
	return want, nil
}
