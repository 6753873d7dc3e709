package tensorfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// MaxSafetensorsHeader bounds the JSON header a reader accepts (100 MB, as the
// reference implementation does); real headers are a few hundred KB.
const MaxSafetensorsHeader = 100 << 20

// metadataKey is the reserved header entry holding the string-to-string map.
const metadataKey = "__metadata__"

// File is a parsed and validated safetensors file. Tensor data stays in the
// ReaderAt until Raw, Float32 or CheckFinite reads it.
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
// with offsets relative to the data section at byte 8+N, and an optional
// "__metadata__" object of strings.
type File struct {
	tensors
	Tensors    []TensorInfo      // sorted by name
	Metadata   map[string]string // never nil
	HeaderSize int64             // N: the JSON header's length in bytes
}

// ReadSafetensors parses the header of a safetensors file of the given size
// and validates every tensor entry against it before returning; see the
// package documentation for what a successful read guarantees.
func ReadSafetensors(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("safetensors: file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if m, err := r.ReadAt(lenBuf[:], 0); m != len(lenBuf) {
		return nil, fmt.Errorf("safetensors: reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxSafetensorsHeader {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxSafetensorsHeader)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("safetensors: header length %d runs past the end of the %d-byte file", n, size)
	}
	header := make([]byte, n)
	if m, err := r.ReadAt(header, 8); m != len(header) {
		return nil, fmt.Errorf("safetensors: reading the %d-byte header: %w", n, err)
	}
	f := &File{HeaderSize: int64(n), Metadata: map[string]string{}}
	f.tensors = tensors{format: "safetensors", r: r, info: func(i int) *TensorInfo { return &f.Tensors[i] }}
	if err := f.parseHeader(header, 8+int64(n), size); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) parseHeader(header []byte, dataStart, size int64) error {
	if !utf8.Valid(header) {
		return errors.New("safetensors: header is not valid UTF-8")
	}
	fields, err := ObjectFields(header)
	if err != nil {
		return fmt.Errorf("safetensors: header: %w", err)
	}
	dataLen := size - dataStart
	f.Tensors = make([]TensorInfo, 0, len(fields))
	for _, fl := range fields {
		if fl.Key == metadataKey {
			if f.Metadata, err = parseMetadata(fl.Raw); err != nil {
				return err
			}
			continue
		}
		t, err := parseEntry(fl.Key, fl.Raw, dataLen)
		if err != nil {
			return err
		}
		t.Offset += dataStart
		f.Tensors = append(f.Tensors, t)
	}
	sort.Slice(f.Tensors, func(a, b int) bool { return f.Tensors[a].Name < f.Tensors[b].Name })
	if err := f.build(len(f.Tensors)); err != nil {
		return err
	}
	return f.checkOverlaps(len(f.Tensors))
}

// parseMetadata reads the __metadata__ object, refusing duplicate keys as
// the rest of the header does; null is an empty map.
func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	m := map[string]string{}
	if string(raw) == "null" {
		return m, nil
	}
	fields, err := ObjectFields(raw)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s must map strings to strings: %w", metadataKey, err)
	}
	for _, fl := range fields {
		var v string
		if err := json.Unmarshal(fl.Raw, &v); err != nil {
			return nil, fmt.Errorf("safetensors: %s must map strings to strings: %q is %.40s", metadataKey, fl.Key, fl.Raw)
		}
		m[fl.Key] = v
	}
	return m, nil
}

// parseEntry validates one tensor entry; the returned Offset is relative to
// the data section, which is dataLen bytes long.
func parseEntry(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	fail := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("safetensors: tensor %q: %s", name, fmt.Sprintf(format, args...))
	}
	fields, err := ObjectFields(raw)
	if err != nil {
		return fail("%v", err)
	}
	var dtRaw, shapeRaw, offRaw json.RawMessage
	for _, fl := range fields {
		switch fl.Key {
		case "dtype":
			dtRaw = fl.Raw
		case "shape":
			shapeRaw = fl.Raw
		case "data_offsets":
			offRaw = fl.Raw
		}
	}
	if dtRaw == nil || shapeRaw == nil || offRaw == nil {
		return fail("entry needs dtype, shape and data_offsets, got %s", raw)
	}
	var dtName string
	if err := json.Unmarshal(dtRaw, &dtName); err != nil {
		return fail("dtype %s is not a string", dtRaw)
	}
	dt, ok := DTypeFromSafetensors(dtName)
	if !ok {
		return fail("unknown dtype %q", dtName)
	}
	shape, err := intArray(shapeRaw)
	if err != nil {
		return fail("shape: %v", err)
	}
	offs, err := intArray(offRaw)
	if err != nil {
		return fail("data_offsets: %v", err)
	}
	if len(offs) != 2 {
		return fail("data_offsets %s must be [begin, end]", offRaw)
	}
	begin, end := offs[0], offs[1]
	if begin > end {
		return fail("data_offsets [%d,%d) end before they begin", begin, end)
	}
	want, ok, why := byteSize(dt, shape, len(shape)-1, math.MaxInt64)
	if !ok {
		return fail("shape %s %v: %s", shapeString(shape), dt, why)
	}
	if end-begin != want {
		return fail("data_offsets [%d,%d) span %d bytes, want %s %v = %d",
			begin, end, end-begin, shapeString(shape), dt, want)
	}
	if end > uint64(dataLen) {
		return fail("data_offsets [%d,%d) run past the %d-byte data section", begin, end, dataLen)
	}
	t := TensorInfo{Name: name, DType: dt, Shape: make([]int, len(shape)), Offset: int64(begin), Size: int64(want)}
	for i, d := range shape {
		if d > math.MaxInt {
			return fail("dim %d is too large", d)
		}
		t.Shape[i] = int(d)
	}
	return t, nil
}

// Field is one member of a JSON object, in document order.
type Field struct {
	Key string
	Raw json.RawMessage
}

// ObjectFields splits a JSON object into its members, rejecting anything
// that is not exactly one object (trailing whitespace allowed) and duplicate
// keys, which encoding/json would otherwise silently resolve to the last
// (the safetensors header, and model's config.json check).
func ObjectFields(data []byte) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object, got %v", tok)
	}
	var out []Field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys
		if seen[key] {
			return nil, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON after key %q: %w", key, err)
		}
		out = append(out, Field{key, raw})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	rest := data[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, fmt.Errorf("unexpected bytes after the JSON object: %.20q", rest)
	}
	return out, nil
}

// intArray parses a JSON array of non-negative integer literals.
func intArray(raw json.RawMessage) ([]uint64, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return nil, fmt.Errorf("%s is not an array", raw)
	}
	out := make([]uint64, len(elems))
	for i, e := range elems {
		s := string(e)
		if len(s) > 0 && s[0] == '-' {
			return nil, fmt.Errorf("element %d is negative (%s)", i, s)
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v > math.MaxInt64 {
			return nil, fmt.Errorf("element %d (%s) is not an integer in [0, 2^63)", i, s)
		}
		out[i] = v
	}
	return out, nil
}
