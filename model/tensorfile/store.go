package tensorfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// TensorInfo locates one tensor inside a file.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int // row-major, outermost first; empty for a scalar
	Offset int64 // absolute byte offset of the data in the file
	Size   int64 // bytes of data: numel / DType.BlockSize() * DType.BlockBytes()
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d) // cannot overflow: validated when the file was read
	}
	return n
}

// tensors is the part shared by File and GGUFFile: the validated tensor
// table and the ReaderAt their data comes from. Its methods are promoted.
type tensors struct {
	format string // error prefix: "safetensors" or "gguf"
	r      io.ReaderAt
	names  []string       // sorted
	index  map[string]int // name -> position in the format's info slice
	info   func(i int) *TensorInfo
}

// Names returns the tensor names, sorted. The caller must not modify it.
func (s *tensors) Names() []string { return s.names }

// Has reports whether the file holds a tensor of this name.
func (s *tensors) Has(name string) bool { _, ok := s.index[name]; return ok }

// Info returns the named tensor's location, dtype and shape.
func (s *tensors) Info(name string) (TensorInfo, bool) {
	i, ok := s.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return *s.info(i), true
}

func (s *tensors) lookup(name string) (*TensorInfo, error) {
	i, ok := s.index[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q in the file", s.format, name)
	}
	return s.info(i), nil
}

// Raw returns the named tensor's bytes as stored (little-endian, any dtype).
func (s *tensors) Raw(name string) ([]byte, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, t.Size)
	if err := s.readAt(t, buf, t.Offset); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *tensors) readAt(t *TensorInfo, buf []byte, off int64) error {
	n, err := s.r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: tensor %q: reading %d bytes at offset %d: %w (is the file truncated?)",
		s.format, t.Name, len(buf), off, err)
}

// chunkBytes bounds the scratch buffer used while decoding, so Float32 and
// CheckFinite need no more memory than their result plus this.
const chunkBytes = 1 << 20

// chunks streams the tensor's bytes through fn in pieces holding whole
// elements; first is the index of the piece's first element.
func (s *tensors) chunks(t *TensorInfo, fn func(first int64, b []byte) error) error {
	es := t.DType.BlockBytes()
	step := chunkBytes / es * es
	buf := make([]byte, min(step, t.Size))
	for done := int64(0); done < t.Size; {
		b := buf[:min(step, t.Size-done)]
		if err := s.readAt(t, b, t.Offset+done); err != nil {
			return err
		}
		if err := fn(done/es, b); err != nil {
			return err
		}
		done += int64(len(b))
	}
	return nil
}

func (s *tensors) unsupported(t *TensorInfo, what string) error {
	return fmt.Errorf("%s: tensor %q has dtype %v, which %s does not support (only F32, F16, BF16, Q8_0, Q4_0 and Q4_K)",
		s.format, t.Name, t.DType, what)
}

// Float32 reads the named tensor and widens it to float32: exactly for F32,
// F16 and BF16, dequantized (exactly as ggml does) for Q8_0, Q4_0 and Q4_K,
// an error for every other dtype. The result has NumElements values in
// row-major order.
func (s *tensors) Float32(name string) ([]float32, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.DType.Float32Decodable() {
		return nil, s.unsupported(t, "Float32")
	}
	bs := t.DType.BlockSize()
	out := make([]float32, t.Size/t.DType.BlockBytes()*bs)
	err = s.chunks(t, func(first int64, b []byte) error {
		decodeFloat32(out[first*bs:], t.DType, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Float32Chunks is Float32 a piece at a time, for a caller that needs no
// copy of the whole tensor: fn gets the values from element first on, in
// a buffer that the next call reuses.
func (s *tensors) Float32Chunks(name string, fn func(first int64, vals []float32) error) error {
	t, err := s.lookup(name)
	if err != nil {
		return err
	}
	if !t.DType.Float32Decodable() {
		return s.unsupported(t, "Float32Chunks")
	}
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	var buf []float32
	return s.chunks(t, func(first int64, b []byte) error {
		n := int(int64(len(b)) / bb * bs)
		if cap(buf) < n {
			buf = make([]float32, n)
		}
		decodeFloat32(buf[:n], t.DType, b)
		return fn(first*bs, buf[:n])
	})
}

// decodeFloat32 widens the little-endian elements in b into dst.
func decodeFloat32(dst []float32, dt DType, b []byte) {
	switch dt {
	case F32:
		for i := range len(b) / 4 {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		for i := range len(b) / 2 {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range len(b) / 2 {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	default:
		f, ok := dt.QuantFormat()
		if !ok {
			panic("tensorfile: decodeFloat32 of " + dt.String())
		}
		n := len(b) / int(dt.BlockBytes()) * int(dt.BlockSize())
		quant.Dequantize(f, dst[:n], b)
	}
}

// CheckFinite reads the named tensor and returns an error naming it and the
// first NaN or ±Inf element, if any. Integer and boolean tensors are finite by
// construction, and Q8_0/Q4_0/Q4_K blocks are checked for a non-finite scale;
// F8 and the other block-quantised types are reported as unsupported.
func (s *tensors) CheckFinite(name string) error {
	t, err := s.lookup(name)
	if err != nil {
		return err
	}
	var bad func(b []byte) (int, string)
	switch t.DType {
	case F32:
		bad = func(b []byte) (int, string) {
			for i := range len(b) / 4 {
				if u := binary.LittleEndian.Uint32(b[4*i:]); u&0x7f800000 == 0x7f800000 {
					return i, fmt.Sprint(math.Float32frombits(u))
				}
			}
			return -1, ""
		}
	case F16, BF16:
		mask := uint16(0x7c00)
		conv := F16ToF32
		if t.DType == BF16 {
			mask, conv = 0x7f80, BF16ToF32
		}
		bad = func(b []byte) (int, string) {
			for i := range len(b) / 2 {
				if u := binary.LittleEndian.Uint16(b[2*i:]); u&mask == mask {
					return i, fmt.Sprint(conv(u))
				}
			}
			return -1, ""
		}
	case F64:
		bad = func(b []byte) (int, string) {
			for i := range len(b) / 8 {
				if u := binary.LittleEndian.Uint64(b[8*i:]); u&0x7ff0000000000000 == 0x7ff0000000000000 {
					return i, fmt.Sprint(math.Float64frombits(u))
				}
			}
			return -1, ""
		}
	case I8, I16, I32, I64, U8, U16, U32, U64, Bool:
		return nil
	case Q8_0, Q4_0, Q4_K:
		// The values are integers; the f16 scales (d, and Q4_K's dmin)
		// must be finite. Reported as the block's first element.
		bb, bs := int(t.DType.BlockBytes()), int(t.DType.BlockSize())
		nScales := 1
		if t.DType == Q4_K {
			nScales = 2
		}
		bad = func(b []byte) (int, string) {
			for i := 0; i < len(b)/bb; i++ {
				for j := 0; j < nScales; j++ {
					if u := binary.LittleEndian.Uint16(b[i*bb+2*j:]); u&0x7c00 == 0x7c00 {
						return i * bs, fmt.Sprintf("in a block whose scale is %v", F16ToF32(u))
					}
				}
			}
			return -1, ""
		}
		return s.chunks(t, func(first int64, b []byte) error {
			if i, v := bad(b); i >= 0 {
				return fmt.Errorf("%s: tensor %q (%v %s): element %d is %s",
					s.format, t.Name, t.DType, shapeString(t.Shape), first*int64(bs)+int64(i), v)
			}
			return nil
		})
	default:
		return s.unsupported(t, "CheckFinite")
	}
	return s.chunks(t, func(first int64, b []byte) error {
		if i, v := bad(b); i >= 0 {
			return fmt.Errorf("%s: tensor %q (%v %s): element %d is %s",
				s.format, t.Name, t.DType, shapeString(t.Shape), first+int64(i), v)
		}
		return nil
	})
}

// build fills the name index and sorted name list, rejecting duplicates.
func (s *tensors) build(n int) error {
	s.index = make(map[string]int, n)
	s.names = make([]string, 0, n)
	for i := range n {
		t := s.info(i)
		if _, dup := s.index[t.Name]; dup {
			return fmt.Errorf("%s: tensor name %q appears twice", s.format, t.Name)
		}
		s.index[t.Name] = i
		s.names = append(s.names, t.Name)
	}
	sort.Strings(s.names)
	return nil
}

// checkOverlaps rejects two non-empty tensors whose byte ranges share a byte.
func (s *tensors) checkOverlaps(n int) error {
	order := make([]*TensorInfo, 0, n)
	for i := range n {
		if t := s.info(i); t.Size > 0 {
			order = append(order, t)
		}
	}
	sort.Slice(order, func(a, b int) bool { return order[a].Offset < order[b].Offset })
	for i := 1; i < len(order); i++ {
		p, q := order[i-1], order[i]
		if q.Offset < p.Offset+p.Size {
			return fmt.Errorf("%s: tensors %q [%d,%d) and %q [%d,%d) overlap",
				s.format, p.Name, p.Offset, p.Offset+p.Size, q.Name, q.Offset, q.Offset+q.Size)
		}
	}
	return nil
}

// shapeString formats a shape as "2304x768", or "scalar" for [].
func shapeString[T int | int64 | uint64](shape []T) string {
	if len(shape) == 0 {
		return "scalar"
	}
	var sb strings.Builder
	for i, d := range shape {
		if i > 0 {
			sb.WriteByte('x')
		}
		sb.WriteString(strconv.FormatUint(uint64(d), 10))
	}
	return sb.String()
}

// byteSize returns the bytes a tensor of dtype dt with these dims needs;
// ok is false (with the reason) if the elements are not a whole number of
// blocks along the innermost dim (index inner), or if the size exceeds limit,
// which also rules out overflow. dims may be in either order.
func byteSize(dt DType, dims []uint64, inner int, limit uint64) (size uint64, ok bool, why string) {
	numel := uint64(1)
	if slices.Contains(dims, 0) {
		numel = 0
	} else {
		for _, d := range dims {
			hi, lo := bits.Mul64(numel, d)
			if hi != 0 || lo > math.MaxInt64 {
				return 0, false, "element count overflows int64"
			}
			numel = lo
		}
	}
	bs, tsz := uint64(dt.BlockSize()), uint64(dt.BlockBytes())
	if bs > 1 {
		if len(dims) == 0 {
			return 0, false, fmt.Sprintf("a scalar cannot be stored in %v blocks of %d", dt, bs)
		}
		if dims[inner]%bs != 0 {
			return 0, false, fmt.Sprintf("innermost dim %d is not a multiple of the %v block size %d", dims[inner], dt, bs)
		}
	}
	hi, lo := bits.Mul64(numel/bs, tsz)
	if hi != 0 || lo > limit {
		return 0, false, fmt.Sprintf("%d elements of %v need more than %d bytes", numel, dt, limit)
	}
	return lo, true, ""
}

// Half reads the named F16 tensor as its IEEE half bits, without widening
// (half the memory of Float32), in row-major order; any other dtype is an
// error. The file is read a chunk at a time into the result.
func (s *tensors) Half(name string) ([]uint16, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if t.DType != F16 {
		return nil, fmt.Errorf("%s: tensor %q has dtype %v, not F16", s.format, t.Name, t.DType)
	}
	out := make([]uint16, t.Size/2)
	err = s.chunks(t, func(first int64, b []byte) error {
		for i := range len(b) / 2 {
			out[first+int64(i)] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
