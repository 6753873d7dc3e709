package tensorfile

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteSafetensors writes the tensors and metadata as a safetensors file:
// tensors in sorted-name order, packed without gaps, and the JSON header
// padded with spaces so the data section starts at a multiple of 8 bytes.
// Names must be unique, valid UTF-8 and not "__metadata__"; each tensor's
// dtype must exist in safetensors and its Data must match its shape.
func WriteSafetensors(w io.Writer, ts []Tensor, metadata map[string]string) error {
	order := make([]*Tensor, len(ts))
	for i := range ts {
		order[i] = &ts[i]
	}
	sort.Slice(order, func(a, b int) bool { return order[a].Name < order[b].Name })
	var h strings.Builder
	h.WriteByte('{')
	if len(metadata) > 0 {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return fmt.Errorf("safetensors: metadata %q: %q is not valid UTF-8", k, v)
			}
		}
		m, err := json.Marshal(metadata) // sorts the keys
		if err != nil {
			return fmt.Errorf("safetensors: metadata: %w", err)
		}
		h.WriteString(`"` + metadataKey + `":`)
		h.Write(m)
	}
	var off int64
	for i, t := range order {
		if i > 0 && t.Name == order[i-1].Name {
			return fmt.Errorf("safetensors: tensor name %q appears twice", t.Name)
		}
		if t.Name == metadataKey || !utf8.ValidString(t.Name) {
			return fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		if t.DType.SafetensorsName() == "" {
			return fmt.Errorf("safetensors: tensor %q: dtype %v has no safetensors encoding", t.Name, t.DType)
		}
		if t.Data == nil && t.Produce != nil {
			return fmt.Errorf("safetensors: tensor %q: produced on write, which only WriteGGUF takes", t.Name)
		}
		if err := checkTensor("safetensors", t); err != nil {
			return err
		}
		if h.Len() > 1 {
			h.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		h.Write(name)
		fmt.Fprintf(&h, `:{"dtype":%q,"shape":[`, t.DType.SafetensorsName())
		for j, d := range t.Shape {
			if j > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > MaxSafetensorsHeader {
		return fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", h.Len(), MaxSafetensorsHeader)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(h.Len()))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if _, err := io.WriteString(w, h.String()); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	for _, t := range order {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: writing tensor %q: %w", t.Name, err)
		}
	}
	return nil
}
