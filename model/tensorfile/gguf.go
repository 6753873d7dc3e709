package tensorfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// GGUF layout (little-endian): magic "GGUF", uint32 version, uint64 tensor
// count, uint64 metadata count, the metadata (key string, uint32 value type,
// value), the tensor infos (name string, uint32 n_dims, n_dims uint64 dims
// innermost first, uint32 ggml type, uint64 offset), padding to the
// alignment, then the data section, in which each tensor's offset is
// relative and a multiple of the alignment. Strings are a uint64 length and
// that many bytes. Version 2 and 3 share this layout (3 added big-endian
// files, which this package rejects); version 1 had 32-bit counts and is not
// supported.

// GGUFDefaultAlignment is the data alignment of a GGUF file whose metadata
// has no general.alignment.
const GGUFDefaultAlignment = 32

// ggufAlignmentKey is the metadata key that overrides the alignment (uint32).
const ggufAlignmentKey = "general.alignment"

// GGUFFile is a parsed and validated GGUF file. Tensor data stays in the
// ReaderAt until Raw, Float32 or CheckFinite reads it.
type GGUFFile struct {
	tensors
	Version    uint32
	Alignment  int64            // of the data section and of every tensor offset
	KV         []KV             // metadata in file order
	Tensors    []GGUFTensorInfo // in file order
	DataOffset int64            // absolute offset of the data section
	kvIndex    map[string]int
}

// GGUFTensorInfo is a TensorInfo plus the fields as GGUF stores them.
type GGUFTensorInfo struct {
	TensorInfo          // Shape is outermost first: Dims reversed
	Dims       []uint64 // as stored, innermost first (ggml's ne[0], ne[1], ...)
	RelOffset  uint64   // as stored, relative to DataOffset
}

// ggufReader reads GGUF fields sequentially, never past size.
type ggufReader struct {
	br      *bufio.Reader
	off     int64 // bytes consumed
	size    int64
	scratch [8]byte
}

func (g *ggufReader) errorf(format string, args ...any) error {
	return fmt.Errorf("gguf: at byte %d: %s", g.off, fmt.Sprintf(format, args...))
}

// fixed reads n <= 8 bytes into the scratch buffer, which it always returns.
func (g *ggufReader) fixed(n int) ([]byte, error) {
	b := g.scratch[:n]
	clear(b)
	if int64(n) > g.size-g.off {
		return b, g.errorf("need %d bytes, the %d-byte file ends first", n, g.size)
	}
	if _, err := io.ReadFull(g.br, b); err != nil {
		return b, g.ioErr(err)
	}
	g.off += int64(n)
	return b, nil
}

func (g *ggufReader) ioErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("gguf: at byte %d: %w (is the file truncated?)", g.off, err)
}

func (g *ggufReader) u32() (uint32, error) {
	b, err := g.fixed(4)
	return binary.LittleEndian.Uint32(b), err
}

func (g *ggufReader) u64() (uint64, error) {
	b, err := g.fixed(8)
	return binary.LittleEndian.Uint64(b), err
}

// str reads a length-prefixed string, bounding the length by the bytes left.
func (g *ggufReader) str(what string) (string, error) {
	n, err := g.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(g.size-g.off) {
		return "", g.errorf("%s of %d bytes runs past the end of the %d-byte file", what, n, g.size)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(g.br, b); err != nil {
		return "", g.ioErr(err)
	}
	g.off += int64(n)
	return string(b), nil
}

// count reads a uint64 count of items that each take at least minSize bytes
// and rejects it unless that many could fit in the bytes left: the bound
// that keeps every allocation proportional to the file.
func (g *ggufReader) count(minSize int64, what string) (int64, error) {
	n, err := g.u64()
	if err != nil {
		return 0, err
	}
	if left := g.size - g.off; n > uint64(left/minSize) {
		return 0, g.errorf("%d entries in the %s need at least %d bytes each, only %d bytes are left", n, what, minSize, left)
	}
	return int64(n), nil
}

// ReadGGUF parses the header of a GGUF file (version 2 or 3, little-endian)
// of the given size and validates metadata and tensor infos before returning;
// see the package documentation for what a successful read guarantees.
func ReadGGUF(r io.ReaderAt, size int64) (*GGUFFile, error) {
	if size < 0 {
		return nil, fmt.Errorf("gguf: negative file size %d", size)
	}
	// A small file gets a small buffer, keeping allocations proportional.
	g := &ggufReader{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), int(min(size+16, 64<<10))), size: size}
	magic, err := g.fixed(4)
	if err != nil {
		return nil, fmt.Errorf("gguf: file of %d bytes is too short for the magic", size)
	}
	if string(magic) != "GGUF" {
		return nil, fmt.Errorf("gguf: magic is %q, want \"GGUF\" (not a GGUF file)", magic)
	}
	f := &GGUFFile{}
	f.tensors = tensors{format: "gguf", r: r, info: func(i int) *TensorInfo { return &f.Tensors[i].TensorInfo }}
	if f.Version, err = g.u32(); err != nil {
		return nil, err
	}
	switch {
	case f.Version == 2 || f.Version == 3:
	case bits.ReverseBytes32(f.Version) == 2 || bits.ReverseBytes32(f.Version) == 3:
		return nil, errors.New("gguf: big-endian files are not supported")
	default:
		return nil, fmt.Errorf("gguf: version %d is not supported (only 2 and 3)", f.Version)
	}
	nTensors, err := g.u64()
	if err != nil {
		return nil, err
	}
	// Each KV takes at least a key length, a type and a 1-byte value.
	nKV, err := g.count(8+4+1, "metadata")
	if err != nil {
		return nil, err
	}
	if err := f.readKV(g, nKV); err != nil {
		return nil, err
	}
	// Each tensor info takes at least a name length, n_dims, type and offset.
	if left := g.size - g.off; nTensors > uint64(left/(8+4+4+8)) {
		return nil, g.errorf("%d tensor infos need at least 24 bytes each, only %d bytes are left", nTensors, left)
	}
	if err := f.readTensorInfos(g, int64(nTensors)); err != nil {
		return nil, err
	}
	if err := f.build(len(f.Tensors)); err != nil {
		return nil, err
	}
	if err := f.checkOverlaps(len(f.Tensors)); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *GGUFFile) readKV(g *ggufReader, n int64) error {
	f.KV = make([]KV, 0, n)
	f.kvIndex = make(map[string]int, n)
	f.Alignment = GGUFDefaultAlignment
	for range n {
		key, err := g.str("metadata key")
		if err != nil {
			return err
		}
		if _, dup := f.kvIndex[key]; dup {
			return g.errorf("metadata key %q appears twice", key)
		}
		t, err := g.u32()
		if err != nil {
			return err
		}
		v, err := g.readValue(ValueType(t), 0)
		if err != nil {
			return fmt.Errorf("%w (in metadata %q)", err, key)
		}
		if key == ggufAlignmentKey {
			a, ok := v.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("gguf: %s is %v (%v), want a power of two stored as uint32", key, v, ValueType(t))
			}
			f.Alignment = int64(a)
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	return nil
}

func (f *GGUFFile) readTensorInfos(g *ggufReader, n int64) error {
	f.Tensors = make([]GGUFTensorInfo, 0, n)
	for range n {
		name, err := g.str("tensor name")
		if err != nil {
			return err
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("gguf: tensor %q: %s", name, fmt.Sprintf(format, args...))
		}
		nDims, err := g.u32()
		if err != nil {
			return err
		}
		if left := g.size - g.off; int64(nDims) > left/8 {
			return fail("%d dims do not fit in the %d bytes left", nDims, left)
		}
		t := GGUFTensorInfo{Dims: make([]uint64, nDims)}
		t.Name = name
		for i := range t.Dims {
			if t.Dims[i], err = g.u64(); err != nil {
				return err
			}
			if t.Dims[i] > math.MaxInt64 || t.Dims[i] > math.MaxInt {
				return fail("dim %d is %d, too large", i, t.Dims[i])
			}
		}
		typ, err := g.u32()
		if err != nil {
			return err
		}
		var ok bool
		if t.DType, ok = DTypeFromGGML(typ); !ok {
			return fail("unknown ggml type %d", typ)
		}
		if t.RelOffset, err = g.u64(); err != nil {
			return err
		}
		t.Shape = make([]int, nDims)
		for i, d := range t.Dims {
			t.Shape[len(t.Shape)-1-i] = int(d)
		}
		f.Tensors = append(f.Tensors, t)
	}
	// The data section starts at the first aligned offset after the infos.
	f.DataOffset = (g.off + f.Alignment - 1) / f.Alignment * f.Alignment
	for i := range f.Tensors {
		t := &f.Tensors[i]
		size, ok, why := byteSize(t.DType, t.Dims, 0, uint64(g.size))
		if !ok {
			return fmt.Errorf("gguf: tensor %q: dims %v (innermost first) %v: %s", t.Name, t.Dims, t.DType, why)
		}
		t.Size = int64(size)
		if t.RelOffset%uint64(f.Alignment) != 0 {
			return fmt.Errorf("gguf: tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.RelOffset, f.Alignment)
		}
		if t.RelOffset > uint64(g.size) || f.DataOffset+int64(t.RelOffset)+t.Size > g.size {
			return fmt.Errorf("gguf: tensor %q: %s %v = %d bytes at data offset %d (file offset %d) run past the end of the %d-byte file",
				t.Name, shapeString(t.Shape), t.DType, t.Size, t.RelOffset, f.DataOffset+int64(min(t.RelOffset, uint64(g.size))), g.size)
		}
		t.Offset = f.DataOffset + int64(t.RelOffset)
	}
	return nil
}

// Tensor returns the named tensor's info, GGUF fields included.
func (f *GGUFFile) Tensor(name string) (GGUFTensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return GGUFTensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Get returns the metadata value stored under key.
func (f *GGUFFile) Get(key string) (any, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

func (f *GGUFFile) get(key string) (any, error) {
	v, ok := f.Get(key)
	if !ok {
		return nil, fmt.Errorf("gguf: no metadata key %q", key)
	}
	return v, nil
}

func typeErr(key string, v any, want string) error {
	return fmt.Errorf("gguf: metadata %q is a %T, want %s", key, v, want)
}

// GetString returns a string metadata value.
func (f *GGUFFile) GetString(key string) (string, error) {
	v, err := f.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", typeErr(key, v, "a string")
	}
	return s, nil
}

// GetUint returns an integer metadata value of any integer type, failing if
// it is negative.
func (f *GGUFFile) GetUint(key string) (uint64, error) {
	v, err := f.get(key)
	if err != nil {
		return 0, err
	}
	var s int64
	switch x := v.(type) {
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case int8:
		s = int64(x)
	case int16:
		s = int64(x)
	case int32:
		s = int64(x)
	case int64:
		s = x
	default:
		return 0, typeErr(key, v, "an integer")
	}
	if s < 0 {
		return 0, fmt.Errorf("gguf: metadata %q is %d, want a non-negative integer", key, s)
	}
	return uint64(s), nil
}

// GetInt returns an integer metadata value of any integer type, failing if
// it does not fit in an int64.
func (f *GGUFFile) GetInt(key string) (int64, error) {
	v, err := f.get(key)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	}
	u, err := f.GetUint(key)
	if err != nil {
		return 0, err
	}
	if u > math.MaxInt64 {
		return 0, fmt.Errorf("gguf: metadata %q is %d, which overflows int64", key, u)
	}
	return int64(u), nil
}

// GetFloat returns a float32 or float64 metadata value as float64 (exactly).
func (f *GGUFFile) GetFloat(key string) (float64, error) {
	v, err := f.get(key)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, typeErr(key, v, "a float")
}

// GetBool returns a bool metadata value.
func (f *GGUFFile) GetBool(key string) (bool, error) {
	v, err := f.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, typeErr(key, v, "a bool")
	}
	return b, nil
}

// GetStringArray returns an array-of-strings metadata value (such as
// tokenizer.ggml.tokens). The caller must not modify it.
func (f *GGUFFile) GetStringArray(key string) ([]string, error) {
	v, err := f.get(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.([]string)
	if !ok {
		return nil, typeErr(key, v, "an array of strings")
	}
	return s, nil
}
