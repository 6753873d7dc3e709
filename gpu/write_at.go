package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
)

// RangeWriter is a Backend that can write part of a tensor: a region of a
// large device buffer (a server slot's keys) goes up without the rest,
// which the device may have written since.
type RangeWriter interface {
	// WriteAt copies data ([]float32 into an F32 tensor, []int32 into an
	// I32 one) into t's elements off .. off+len(data)-1, counted in t's
	// row-major order; it fails for another dtype or a range outside t.
	WriteAt(t Tensor, off int, data any) error
}

// CheckWriteAt validates WriteAt's operands (the same on every backend)
// and returns the number of elements written.
func CheckWriteAt(t Tensor, off int, data any) (int, error) {
	n := -1
	switch d := data.(type) {
	case []float32:
		if t.DType() == F32 {
			n = len(d)
		}
	case []int32:
		if t.DType() == I32 {
			n = len(d)
		}
	}
	if n < 0 {
		return 0, fmt.Errorf("gpu: WriteAt: %T into a %v tensor (want []float32 into F32 or []int32 into I32)", data, t.DType())
	}
	if numel := Numel(t.Shape()); off < 0 || off+n > numel {
		return 0, fmt.Errorf("gpu: WriteAt: elements %d .. %d of a tensor %v of %d", off, off+n, t.Shape(), numel)
	}
	return n, nil
}

// WriteAt implements RangeWriter; recorded work that reads t is flushed
// first, as for Write.
func (w *WebGPU) WriteAt(x Tensor, off int, data any) error {
	n, err := CheckWriteAt(x, off, data)
	if err != nil {
		return err
	}
	t := w.t(x)
	if t.buf == nil {
		return fmt.Errorf("%s", heldAsTexture("WriteAt", t))
	}
	bits := func(i int) uint32 { return uint32(data.([]int32)[i]) }
	if f, ok := data.([]float32); ok {
		bits = func(i int) uint32 { return math.Float32bits(f[i]) }
	}
	return w.writeRows(t.buf, uint64(4*off), n, 4, func(dst []byte, r0 int) {
		for i := range len(dst) / 4 {
			binary.LittleEndian.PutUint32(dst[4*i:], bits(r0+i))
		}
	})
}
