package tensorfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// ValueType is a GGUF metadata value type (gguf_type).
type ValueType uint32

// The GGUF metadata value types, with the Go type each is represented by in
// KV.Value.
const (
	TypeUint8   ValueType = 0  // uint8
	TypeInt8    ValueType = 1  // int8
	TypeUint16  ValueType = 2  // uint16
	TypeInt16   ValueType = 3  // int16
	TypeUint32  ValueType = 4  // uint32
	TypeInt32   ValueType = 5  // int32
	TypeFloat32 ValueType = 6  // float32
	TypeBool    ValueType = 7  // bool (stored as one byte, 0 or 1)
	TypeString  ValueType = 8  // string (uint64 length + bytes, no terminator)
	TypeArray   ValueType = 9  // a slice: []uint8 ... []float64, []bool, []string, or []any
	TypeUint64  ValueType = 10 // uint64
	TypeInt64   ValueType = 11 // int64
	TypeFloat64 ValueType = 12 // float64
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32",
	"float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// fixedSize is the encoded size of a scalar of type t; for strings and arrays
// it is the smallest possible encoding (an empty one), used to bound counts.
func (t ValueType) fixedSize() int64 {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64, TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return 0
}

// KV is one GGUF metadata entry. Value holds one of the Go types listed with
// the ValueType constants. An array is a typed slice ([]uint32, []string,
// ...); an array of arrays is a []any whose elements are themselves such
// slices. Readers always produce non-nil slices.
type KV struct {
	Key   string
	Value any
}

// maxArrayDepth bounds the nesting of arrays of arrays.
const maxArrayDepth = 64

// valueType returns the GGUF type of a Go value and, for an array, the type
// of its elements.
func valueType(v any) (t, elem ValueType, ok bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, true
	case int8:
		return TypeInt8, 0, true
	case uint16:
		return TypeUint16, 0, true
	case int16:
		return TypeInt16, 0, true
	case uint32:
		return TypeUint32, 0, true
	case int32:
		return TypeInt32, 0, true
	case float32:
		return TypeFloat32, 0, true
	case bool:
		return TypeBool, 0, true
	case string:
		return TypeString, 0, true
	case uint64:
		return TypeUint64, 0, true
	case int64:
		return TypeInt64, 0, true
	case float64:
		return TypeFloat64, 0, true
	case []uint8:
		return TypeArray, TypeUint8, true
	case []int8:
		return TypeArray, TypeInt8, true
	case []uint16:
		return TypeArray, TypeUint16, true
	case []int16:
		return TypeArray, TypeInt16, true
	case []uint32:
		return TypeArray, TypeUint32, true
	case []int32:
		return TypeArray, TypeInt32, true
	case []float32:
		return TypeArray, TypeFloat32, true
	case []bool:
		return TypeArray, TypeBool, true
	case []string:
		return TypeArray, TypeString, true
	case []uint64:
		return TypeArray, TypeUint64, true
	case []int64:
		return TypeArray, TypeInt64, true
	case []float64:
		return TypeArray, TypeFloat64, true
	case []any:
		return TypeArray, TypeArray, true
	}
	return 0, 0, false
}

// readValue reads a value of type t. depth counts enclosing arrays.
func (g *ggufReader) readValue(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		b, err := g.fixed(1)
		return b[0], err
	case TypeInt8:
		b, err := g.fixed(1)
		return int8(b[0]), err
	case TypeBool:
		b, err := g.fixed(1)
		if err == nil && b[0] > 1 {
			err = g.errorf("bool byte is %d, want 0 or 1", b[0])
		}
		return b[0] == 1, err
	case TypeUint16:
		b, err := g.fixed(2)
		return binary.LittleEndian.Uint16(b), err
	case TypeInt16:
		b, err := g.fixed(2)
		return int16(binary.LittleEndian.Uint16(b)), err
	case TypeUint32:
		b, err := g.fixed(4)
		return binary.LittleEndian.Uint32(b), err
	case TypeInt32:
		b, err := g.fixed(4)
		return int32(binary.LittleEndian.Uint32(b)), err
	case TypeFloat32:
		b, err := g.fixed(4)
		return math.Float32frombits(binary.LittleEndian.Uint32(b)), err
	case TypeUint64:
		return g.u64()
	case TypeInt64:
		v, err := g.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := g.u64()
		return math.Float64frombits(v), err
	case TypeString:
		return g.str("string value")
	case TypeArray:
		if depth >= maxArrayDepth {
			return nil, g.errorf("arrays nested deeper than %d", maxArrayDepth)
		}
		et, err := g.u32()
		if err != nil {
			return nil, err
		}
		elem := ValueType(et)
		if elem.fixedSize() == 0 {
			return nil, g.errorf("unknown array element type %d", et)
		}
		n, err := g.count(elem.fixedSize(), "array of "+elem.String())
		if err != nil {
			return nil, err
		}
		return readArray(g, elem, n, depth+1)
	}
	return nil, g.errorf("unknown value type %d", uint32(t))
}

// readArray reads n elements of type elem into the matching typed slice. n
// has been bounded by the bytes left, so the allocation is proportional to
// the input.
func readArray(g *ggufReader, elem ValueType, n int64, depth int) (any, error) {
	switch elem {
	case TypeUint8:
		return readElems[uint8](g, elem, n, depth)
	case TypeInt8:
		return readElems[int8](g, elem, n, depth)
	case TypeUint16:
		return readElems[uint16](g, elem, n, depth)
	case TypeInt16:
		return readElems[int16](g, elem, n, depth)
	case TypeUint32:
		return readElems[uint32](g, elem, n, depth)
	case TypeInt32:
		return readElems[int32](g, elem, n, depth)
	case TypeFloat32:
		return readElems[float32](g, elem, n, depth)
	case TypeBool:
		return readElems[bool](g, elem, n, depth)
	case TypeString:
		return readElems[string](g, elem, n, depth)
	case TypeUint64:
		return readElems[uint64](g, elem, n, depth)
	case TypeInt64:
		return readElems[int64](g, elem, n, depth)
	case TypeFloat64:
		return readElems[float64](g, elem, n, depth)
	default: // TypeArray
		return readElems[any](g, elem, n, depth)
	}
}

func readElems[T any](g *ggufReader, elem ValueType, n int64, depth int) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		v, err := g.readValue(elem, depth)
		if err != nil {
			return nil, err
		}
		out[i] = v.(T)
	}
	return out, nil
}

// writeValue encodes v (whose type valueType has already accepted) without
// its type tag.
func writeValue(w *countWriter, v any) {
	switch x := v.(type) {
	case uint8:
		w.bytes([]byte{x})
	case int8:
		w.bytes([]byte{byte(x)})
	case bool:
		if x {
			w.bytes([]byte{1})
		} else {
			w.bytes([]byte{0})
		}
	case uint16:
		w.u16(x)
	case int16:
		w.u16(uint16(x))
	case uint32:
		w.u32(x)
	case int32:
		w.u32(uint32(x))
	case float32:
		w.u32(math.Float32bits(x))
	case uint64:
		w.u64(x)
	case int64:
		w.u64(uint64(x))
	case float64:
		w.u64(math.Float64bits(x))
	case string:
		w.str(x)
	case []uint8:
		writeElems(w, TypeUint8, x)
	case []int8:
		writeElems(w, TypeInt8, x)
	case []uint16:
		writeElems(w, TypeUint16, x)
	case []int16:
		writeElems(w, TypeInt16, x)
	case []uint32:
		writeElems(w, TypeUint32, x)
	case []int32:
		writeElems(w, TypeInt32, x)
	case []float32:
		writeElems(w, TypeFloat32, x)
	case []bool:
		writeElems(w, TypeBool, x)
	case []string:
		writeElems(w, TypeString, x)
	case []uint64:
		writeElems(w, TypeUint64, x)
	case []int64:
		writeElems(w, TypeInt64, x)
	case []float64:
		writeElems(w, TypeFloat64, x)
	case []any:
		writeElems(w, TypeArray, x)
	default:
		panic(fmt.Sprintf("tensorfile: writeValue of %T", v))
	}
}

func writeElems[T any](w *countWriter, elem ValueType, xs []T) {
	w.u32(uint32(elem))
	w.u64(uint64(len(xs)))
	for _, x := range xs {
		writeValue(w, x)
	}
}

// checkValue rejects values writeValue cannot encode, including arrays of
// arrays whose elements are not arrays and nesting beyond maxArrayDepth.
func checkValue(v any, depth int) error {
	t, elem, ok := valueType(v)
	if !ok {
		return fmt.Errorf("Go type %T has no GGUF encoding", v)
	}
	if t == TypeArray && depth >= maxArrayDepth {
		return fmt.Errorf("arrays nested deeper than %d", maxArrayDepth)
	}
	if t != TypeArray || elem != TypeArray {
		return nil
	}
	for i, x := range v.([]any) {
		if t, _, _ := valueType(x); t != TypeArray {
			return fmt.Errorf("element %d of an array of arrays is a %T, not a slice", i, x)
		}
		if err := checkValue(x, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// countWriter writes little-endian fields, counting bytes and keeping the
// first error so call sites stay linear.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (c *countWriter) bytes(b []byte) {
	if c.err != nil {
		return
	}
	m, err := c.w.Write(b)
	c.n += int64(m)
	c.err = err
}

func (c *countWriter) u16(v uint16) {
	binary.LittleEndian.PutUint16(c.buf[:], v)
	c.bytes(c.buf[:2])
}

func (c *countWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.buf[:], v)
	c.bytes(c.buf[:4])
}

func (c *countWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(c.buf[:], v)
	c.bytes(c.buf[:8])
}

func (c *countWriter) str(s string) {
	c.u64(uint64(len(s)))
	if c.err == nil {
		m, err := io.WriteString(c.w, s)
		c.n += int64(m)
		c.err = err
	}
}

// pad writes zeros up to the next multiple of align.
func (c *countWriter) pad(align int64) {
	var zeros [64]byte
	for c.n%align != 0 && c.err == nil {
		c.bytes(zeros[:min(int64(len(zeros)), align-c.n%align)])
	}
}
