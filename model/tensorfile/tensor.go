package tensorfile

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Tensor is one tensor to write: raw little-endian Data of the given dtype
// and shape (row-major, outermost first; empty for a scalar).
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// FromFloat32 builds a Tensor by narrowing values to dt, which must be F32,
// F16 or BF16; F16 and BF16 round to nearest, ties to even. len(values) must
// equal the product of shape.
func FromFloat32(name string, dt DType, shape []int, values []float32) (Tensor, error) {
	if !dt.Float32Decodable() {
		return Tensor{}, fmt.Errorf("tensorfile: tensor %q: FromFloat32 cannot produce dtype %v (only F32, F16, BF16)", name, dt)
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
	if !t.DType.Valid() {
		return fmt.Errorf("%s: tensor %q: invalid dtype %v", format, t.Name, t.DType)
	}
	dims := make([]uint64, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("%s: tensor %q: negative dim in shape %v", format, t.Name, t.Shape)
		}
		dims[i] = uint64(d)
	}
	want, ok, why := byteSize(t.DType, dims, len(dims)-1, math.MaxInt64)
	if !ok {
		return fmt.Errorf("%s: tensor %q: shape %s %v: %s", format, t.Name, shapeString(t.Shape), t.DType, why)
	}
	if uint64(len(t.Data)) != want {
		return fmt.Errorf("%s: tensor %q: %d bytes of data, want %s %v = %d",
			format, t.Name, len(t.Data), shapeString(t.Shape), t.DType, want)
	}
	return nil
}
