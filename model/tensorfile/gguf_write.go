package tensorfile

import (
	"bufio"
	"fmt"
	"io"
)

// WriteGGUF writes a little-endian GGUF version 3 file: the metadata in the
// given order, then the tensor infos and data in the given order, each tensor
// starting at a multiple of the alignment (general.alignment if meta sets it,
// as a power-of-two uint32, else 32) and the data zero-padded to it.
// Metadata keys and tensor names must be unique, metadata values must be of
// the Go types listed with the ValueType constants, each tensor's dtype must
// exist in GGUF, and a block-quantised tensor's innermost dim must be a whole
// number of blocks. Reading the result back yields the same metadata, infos
// and bytes. (ggml itself accepts at most 4 dims and 63-byte names; this
// package does not impose those limits.)
func WriteGGUF(w io.Writer, meta []KV, ts []Tensor) error {
	align, err := checkMeta(meta)
	if err != nil {
		return err
	}
	names := make(map[string]bool, len(ts))
	offsets, sizes := make([]uint64, len(ts)), make([]uint64, len(ts))
	var off int64
	for i := range ts {
		t := &ts[i]
		if names[t.Name] {
			return fmt.Errorf("gguf: tensor name %q appears twice", t.Name)
		}
		names[t.Name] = true
		if _, ok := t.DType.GGMLType(); !ok {
			return fmt.Errorf("gguf: tensor %q: dtype %v has no GGUF encoding", t.Name, t.DType)
		}
		size, err := tensorSize("gguf", t)
		if err != nil {
			return err
		}
		sizes[i] = size
		offsets[i] = uint64(off)
		off += (int64(size) + align - 1) / align * align
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	c := &countWriter{w: bw}
	c.bytes([]byte("GGUF"))
	c.u32(3)
	c.u64(uint64(len(ts)))
	c.u64(uint64(len(meta)))
	for _, kv := range meta {
		c.str(kv.Key)
		t, _, _ := valueType(kv.Value)
		c.u32(uint32(t))
		writeValue(c, kv.Value)
	}
	for i, t := range ts {
		c.str(t.Name)
		c.u32(uint32(len(t.Shape)))
		for j := len(t.Shape) - 1; j >= 0; j-- { // innermost first
			c.u64(uint64(t.Shape[j]))
		}
		id, _ := t.DType.GGMLType()
		c.u32(id)
		c.u64(offsets[i])
	}
	c.pad(align)
	for i, t := range ts {
		data := t.Data
		if data == nil && t.Produce != nil && c.err == nil {
			var err error
			if data, err = t.Produce(); err != nil {
				return fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
			}
			if uint64(len(data)) != sizes[i] {
				return fmt.Errorf("gguf: tensor %q: produced %d bytes, want %d", t.Name, len(data), sizes[i])
			}
		}
		c.bytes(data)
		c.pad(align)
	}
	if c.err == nil {
		c.err = bw.Flush()
	}
	if c.err != nil {
		return fmt.Errorf("gguf: %w", c.err)
	}
	return nil
}

// checkMeta refuses duplicate keys, values without a GGUF encoding and a
// bad general.alignment, and returns the alignment the tensor data uses.
func checkMeta(meta []KV) (int64, error) {
	align := int64(GGUFDefaultAlignment)
	keys := make(map[string]bool, len(meta))
	for _, kv := range meta {
		if keys[kv.Key] {
			return 0, fmt.Errorf("gguf: metadata key %q appears twice", kv.Key)
		}
		keys[kv.Key] = true
		if err := checkValue(kv.Value, 0); err != nil {
			return 0, fmt.Errorf("gguf: metadata %q: %w", kv.Key, err)
		}
		if kv.Key == ggufAlignmentKey {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return 0, fmt.Errorf("gguf: %s is %v (%T), want a power of two stored as uint32", kv.Key, kv.Value, kv.Value)
			}
			align = int64(a)
		}
	}
	return align, nil
}
