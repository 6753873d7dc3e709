package tensorfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

func testMeta() []KV {
	return []KV{
		{"general.architecture", "gpt2"},
		{"gpt2.context_length", uint32(1024)},
		{"gpt2.block_count", uint64(12)},
		{"u8", uint8(200)}, {"i8", int8(-3)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"i32", int32(-7)}, {"i64", int64(-1) << 40}, {"neg", int32(-1)},
		{"f32", float32(1.5)}, {"f64", math.Pi}, {"nan", float32(math.NaN())},
		{"yes", true}, {"no", false}, {"empty string", ""},
		{"tokenizer.ggml.tokens", []string{"a", "b", "ünï", ""}},
		{"scores", []float32{0.5, -1}}, {"types", []int32{1, 2, 3}}, {"bytes", []uint8{}},
		{"bools", []bool{true, false}}, {"u64s", []uint64{math.MaxUint64}}, {"f64s", []float64{-0.0}},
		{"u16s", []uint16{1}}, {"i16s", []int16{-1}}, {"u32s", []uint32{7}}, {"i64s", []int64{-9}}, {"i8s", []int8{-8}},
		{"nested", []any{[]string{"x"}, []uint32{1, 2}, []any{[]bool{true}}, []any{}}},
	}
}

func ggufTensors(t *testing.T) []Tensor {
	ts := testTensors(t)
	// A block-quantised tensor: 2 rows of 64 Q4_0 elements, 2 blocks of 18 bytes each.
	q := make([]byte, 2*2*18)
	for i := range q {
		q[i] = byte(i)
	}
	return append(ts, Tensor{Name: "q", DType: Q4_0, Shape: []int{2, 64}, Data: q})
}

func writeGG(t *testing.T, meta []KV, ts []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, meta, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readGG(t *testing.T, b []byte) *GGUFFile {
	t.Helper()
	f, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// sameValue compares metadata values, floats by their bits (so NaN equals
// itself) and slices element by element.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []float32:
		y, ok := b.([]float32)
		return ok && slices.EqualFunc(x, y, func(p, q float32) bool { return sameValue(p, q) })
	case []float64:
		y, ok := b.([]float64)
		return ok && slices.EqualFunc(x, y, func(p, q float64) bool { return sameValue(p, q) })
	case []any:
		y, ok := b.([]any)
		return ok && slices.EqualFunc(x, y, sameValue)
	}
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() == reflect.Slice { // nil and empty slices are the same array
		if va.Len() != vb.Len() {
			return false
		}
		for i := range va.Len() {
			if va.Index(i).Interface() != vb.Index(i).Interface() {
				return false
			}
		}
		return true
	}
	return a == b
}

func sameKV(a, b []KV) bool {
	return slices.EqualFunc(a, b, func(p, q KV) bool { return p.Key == q.Key && sameValue(p.Value, q.Value) })
}

func TestGGUFRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 64, 1} {
		meta := testMeta()
		if align != 0 {
			meta = append(meta, KV{"general.alignment", align})
		}
		ts := ggufTensors(t)
		b := writeGG(t, meta, ts)
		f := readGG(t, b)
		wantAlign := int64(align)
		if align == 0 {
			wantAlign = GGUFDefaultAlignment
		}
		if f.Version != 3 || f.Alignment != wantAlign || f.DataOffset%wantAlign != 0 {
			t.Fatalf("version %d alignment %d data offset %d, want 3, %d and aligned", f.Version, f.Alignment, f.DataOffset, wantAlign)
		}
		if !sameKV(f.KV, meta) {
			t.Fatalf("metadata\n got %v\nwant %v", f.KV, meta)
		}
		if len(f.Tensors) != len(ts) {
			t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
		}
		for i, want := range ts {
			got := f.Tensors[i]
			if got.Name != want.Name || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) {
				t.Fatalf("tensor %d: %+v, want %s %v %v", i, got.TensorInfo, want.Name, want.DType, want.Shape)
			}
			for j, d := range got.Dims {
				if int(d) != want.Shape[len(want.Shape)-1-j] {
					t.Fatalf("%q: Dims %v are not Shape %v reversed", got.Name, got.Dims, got.Shape)
				}
			}
			if got.Offset%wantAlign != 0 || got.Offset != f.DataOffset+int64(got.RelOffset) {
				t.Fatalf("%q: offset %d (relative %d) not aligned to %d", got.Name, got.Offset, got.RelOffset, wantAlign)
			}
			raw, err := f.Raw(want.Name)
			if err != nil || !bytes.Equal(raw, want.Data) {
				t.Fatalf("Raw(%q): %v", want.Name, err)
			}
		}
		// Read back, write again: the same bytes.
		again := make([]Tensor, len(f.Tensors))
		for i, info := range f.Tensors {
			raw, _ := f.Raw(info.Name)
			again[i] = Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw}
		}
		if b2 := writeGG(t, f.KV, again); !bytes.Equal(b, b2) {
			t.Errorf("alignment %d: rewriting the file read back changed its bytes", align)
		}
		vals, err := f.Float32("h.0.attn.c_attn.bias")
		if err != nil || len(vals) != 5 || vals[4] != -2 {
			t.Errorf("Float32 = %v, %v", vals, err)
		}
		qraw, _ := f.Raw("q")
		qwant := make([]float32, 128)
		quant.Dequantize(quant.Q4_0, qwant, qraw)
		if qv, err := f.Float32("q"); err != nil || !slices.Equal(qv, qwant) {
			t.Errorf("Float32(q) of Q4_0 blocks: %v, want their dequantized values", err)
		}
	}
}

func TestGGUFEmpty(t *testing.T) {
	f := readGG(t, writeGG(t, nil, nil))
	if len(f.KV) != 0 || len(f.Tensors) != 0 || len(f.Names()) != 0 {
		t.Errorf("empty file read back as %+v", f)
	}
}

func TestGGUFAccessors(t *testing.T) {
	f := readGG(t, writeGG(t, testMeta(), nil))
	if s, err := f.GetString("general.architecture"); s != "gpt2" || err != nil {
		t.Errorf("GetString = %q, %v", s, err)
	}
	for key, want := range map[string]uint64{"gpt2.context_length": 1024, "gpt2.block_count": 12, "u8": 200, "u16": 60000} {
		if v, err := f.GetUint(key); v != want || err != nil {
			t.Errorf("GetUint(%q) = %d, %v", key, v, err)
		}
	}
	if v, err := f.GetInt("i64"); v != -1<<40 || err != nil {
		t.Errorf("GetInt = %d, %v", v, err)
	}
	if v, err := f.GetFloat("f32"); v != 1.5 || err != nil {
		t.Errorf("GetFloat = %v, %v", v, err)
	}
	if v, err := f.GetBool("yes"); !v || err != nil {
		t.Errorf("GetBool = %v, %v", v, err)
	}
	if v, err := f.GetStringArray("tokenizer.ggml.tokens"); len(v) != 4 || v[2] != "ünï" || err != nil {
		t.Errorf("GetStringArray = %q, %v", v, err)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{func() error { _, err := f.GetUint("neg"); return err }(), `"neg" is -1, want a non-negative integer`},
		{func() error { _, err := f.GetUint("f32"); return err }(), `"f32" is a float32, want an integer`},
		{func() error { _, err := f.GetString("missing"); return err }(), `no metadata key "missing"`},
		{func() error { _, err := f.GetFloat("u8"); return err }(), `want a float`},
		{func() error { _, err := f.GetStringArray("scores"); return err }(), `is a []float32, want an array of strings`},
		{func() error { _, err := f.GetInt("u64s"); return err }(), `want an integer`},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("error %v, want %q", c.err, c.want)
		}
	}
}

// gb builds GGUF files byte by byte for the validation tests.
type gb struct{ bytes.Buffer }

func (b *gb) u32(v uint32) *gb { b.Write(binary.LittleEndian.AppendUint32(nil, v)); return b }
func (b *gb) u64(v uint64) *gb { b.Write(binary.LittleEndian.AppendUint64(nil, v)); return b }
func (b *gb) str(s string) *gb { b.u64(uint64(len(s))); b.WriteString(s); return b }

// head starts a v3 file with the given counts.
func head(nTensors, nKV uint64) *gb {
	b := &gb{}
	b.WriteString("GGUF")
	return b.u32(3).u64(nTensors).u64(nKV)
}

// tinfo appends a tensor info.
func (b *gb) tinfo(name string, dims []uint64, typ uint32, off uint64) *gb {
	b.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		b.u64(d)
	}
	return b.u32(typ).u64(off)
}

// data pads to 32 and appends n zero bytes.
func (b *gb) data(n int) []byte {
	for b.Len()%32 != 0 {
		b.WriteByte(0)
	}
	b.Write(make([]byte, n))
	return b.Bytes()
}

func TestGGUFValidation(t *testing.T) {
	valid := writeGG(t, testMeta(), ggufTensors(t))
	be := &gb{}
	be.WriteString("GGUF")
	be.Write([]byte{0, 0, 0, 3})
	dk := head(0, 2).str("k").u32(0)
	dk.WriteByte(1)
	dk.str("k").u32(0).WriteByte(2)
	dupKey := dk.Bytes()
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "too short for the magic"},
		{"magic", []byte("GGML\x03\x00\x00\x00"), `magic is "GGML"`},
		{"version 1", append([]byte("GGUF"), 1, 0, 0, 0), "version 1 is not supported"},
		{"big endian", be.Bytes(), "big-endian files are not supported"},
		{"truncated header", valid[:10], "the 10-byte file ends first"},
		{"kv count", head(0, 1<<60).Bytes(), "1152921504606846976 entries in the metadata"},
		{"tensor count", head(1<<60, 0).Bytes(), "1152921504606846976 tensor infos need at least 24 bytes each"},
		{"key length", append(head(0, 1).u64(1<<62).Bytes(), make([]byte, 16)...), "metadata key of 4611686018427387904 bytes runs past the end"},
		{"string length", head(0, 1).str("k").u32(8).u64(1 << 40).Bytes(), "string value of 1099511627776 bytes runs past"},
		{"array count", head(0, 1).str("k").u32(9).u32(4).u64(1 << 60).Bytes(), "1152921504606846976 entries in the array of uint32"},
		{"nested array count", head(0, 1).str("k").u32(9).u32(9).u64(1).u32(8).u64(1 << 61).Bytes(), "entries in the array of string"},
		{"value type", head(0, 1).str("k").u32(13).Bytes(), `gguf: at byte 37: unknown value type 13 (in metadata "k")`},
		{"array elem type", head(0, 1).str("k").u32(9).u32(99).u64(0).Bytes(), "unknown array element type 99"},
		{"bool", append(head(0, 1).str("k").u32(7).Bytes(), 2), "bool byte is 2, want 0 or 1"},
		{"duplicate key", dupKey, `metadata key "k" appears twice`},
		{"alignment type", head(0, 1).str("general.alignment").u32(10).u64(64).Bytes(), "general.alignment is 64 (uint64), want a power of two stored as uint32"},
		{"alignment value", head(0, 1).str("general.alignment").u32(4).u32(48).Bytes(), "general.alignment is 48"},
		{"alignment zero", head(0, 1).str("general.alignment").u32(4).u32(0).Bytes(), "general.alignment is 0"},
		{"n_dims", append(head(1, 0).str("t").u32(1<<30).Bytes(), make([]byte, 32)...), `tensor "t": 1073741824 dims do not fit`},
		{"ggml type", head(1, 0).tinfo("t", []uint64{4}, 77, 0).data(16), `tensor "t": unknown ggml type 77`},
		{"dim too large", head(1, 0).tinfo("t", []uint64{1 << 63}, 0, 0).data(16), `tensor "t": dim 0 is 9223372036854775808, too large`},
		{"numel overflow", head(1, 0).tinfo("t", []uint64{1 << 32, 1 << 32}, 0, 0).data(16), `element count overflows`},
		{"too big", head(1, 0).tinfo("t", []uint64{1 << 40}, 0, 0).data(16), `need more than`},
		{"block", head(1, 0).tinfo("t", []uint64{33, 2}, 2, 0).data(200), `innermost dim 33 is not a multiple of the Q4_0 block size 32`},
		{"misaligned", head(1, 0).tinfo("t", []uint64{4}, 0, 8).data(64), `tensor "t": offset 8 is not a multiple of the alignment 32`},
		{"out of range", head(1, 0).tinfo("t", []uint64{4, 3}, 0, 32).data(64), `tensor "t": 3x4 F32 = 48 bytes at data offset 32`},
		{"offset huge", head(1, 0).tinfo("t", []uint64{4}, 0, 1<<63).data(64), `run past the end`},
		{"overlap", head(2, 0).tinfo("a", []uint64{16}, 0, 0).tinfo("b", []uint64{4}, 0, 32).data(128), `tensors "a" [`},
		{"duplicate tensor", head(2, 0).tinfo("a", []uint64{4}, 0, 0).tinfo("a", []uint64{4}, 0, 32).data(64), `tensor name "a" appears twice`},
		{"truncated infos", head(1, 0).tinfo("t", []uint64{4}, 0, 0).Bytes()[:50], "ends first"},
	} {
		_, err := ReadGGUF(bytes.NewReader(c.file), int64(len(c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// Arrays nested deeper than the limit.
	deep := head(0, 1).str("k").u32(9)
	for range maxArrayDepth + 1 {
		deep.u32(9).u64(1)
	}
	deep.u32(0).u64(0)
	if _, err := ReadGGUF(bytes.NewReader(deep.Bytes()), int64(deep.Len())); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep nesting: %v", err)
	}
	// Version 2 has the same layout.
	v2 := slices.Clone(valid)
	v2[4] = 2
	if f, err := ReadGGUF(bytes.NewReader(v2), int64(len(v2))); err != nil || f.Version != 2 {
		t.Errorf("version 2: %v", err)
	}
	// Zero-size tensors and gaps are fine.
	ok := head(3, 0).tinfo("a", []uint64{0, 5}, 0, 0).tinfo("b", []uint64{4}, 0, 64).tinfo("c", nil, 1, 96).data(100)
	f, err := ReadGGUF(bytes.NewReader(ok), int64(len(ok)))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := f.Info("c"); len(info.Shape) != 0 || info.Size != 2 || info.DType != F16 {
		t.Errorf("scalar info %+v", info)
	}
	if info, _ := f.Tensor("a"); !slices.Equal(info.Dims, []uint64{0, 5}) || !slices.Equal(info.Shape, []int{5, 0}) || info.RelOffset != 0 {
		t.Errorf("zero-size info %+v", info)
	}
}

func TestWriteGGUFErrors(t *testing.T) {
	ok := Tensor{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}
	deep := any([]uint8{})
	for range maxArrayDepth {
		deep = []any{deep}
	}
	for _, c := range []struct {
		name string
		meta []KV
		ts   []Tensor
		want string
	}{
		{"dup key", []KV{{"k", uint8(1)}, {"k", uint8(2)}}, nil, `metadata key "k" appears twice`},
		{"bad type", []KV{{"k", 3}}, nil, `metadata "k": Go type int has no GGUF encoding`},
		{"bad nested", []KV{{"k", []any{"s"}}}, nil, `element 0 of an array of arrays is a string`},
		{"too deep", []KV{{"k", deep}}, nil, `nested deeper`},
		{"alignment", []KV{{"general.alignment", uint32(3)}}, nil, `general.alignment is 3`},
		{"dup tensor", nil, []Tensor{ok, ok}, `tensor name "a" appears twice`},
		{"u8 tensor", nil, []Tensor{{Name: "u", DType: U8, Shape: []int{1}, Data: []byte{1}}}, `dtype U8 has no GGUF encoding`},
		{"size", nil, []Tensor{{Name: "w", DType: BF16, Shape: []int{3}, Data: make([]byte, 4)}}, `tensor "w": 4 bytes of data, want 3 BF16 = 6`},
		{"block", nil, []Tensor{{Name: "q", DType: Q8_0, Shape: []int{16}, Data: make([]byte, 34)}}, `innermost dim 16 is not a multiple of the Q8_0 block size 32`},
	} {
		err := WriteGGUF(&bytes.Buffer{}, c.meta, c.ts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestWriteGGUFProduced: a tensor produced on write gives the file its
// data would; a producer's wrong size or error fails the write, naming
// the tensor; safetensors refuses produced tensors.
func TestWriteGGUFProduced(t *testing.T) {
	data := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	meta := []KV{{"general.alignment", uint32(32)}}
	plain := []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: data}, {Name: "b", DType: F16, Shape: []int{1}, Data: data[:2]}}
	var want, got bytes.Buffer
	if err := WriteGGUF(&want, meta, plain); err != nil {
		t.Fatal(err)
	}
	lazy := slices.Clone(plain)
	lazy[0].Data, lazy[0].Produce = nil, func() ([]byte, error) { return data, nil }
	if err := WriteGGUF(&got, meta, lazy); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("a produced tensor wrote other bytes")
	}
	lazy[0].Produce = func() ([]byte, error) { return data[:6], nil }
	if err := WriteGGUF(&bytes.Buffer{}, meta, lazy); err == nil || !strings.Contains(err.Error(), `tensor "a": produced 6 bytes, want 8`) {
		t.Fatalf("short producer: %v", err)
	}
	lazy[0].Produce = func() ([]byte, error) { return nil, errors.New("boom") }
	if err := WriteGGUF(&bytes.Buffer{}, meta, lazy); err == nil || !strings.Contains(err.Error(), `tensor "a": boom`) {
		t.Fatalf("failing producer: %v", err)
	}
	if err := WriteSafetensors(&bytes.Buffer{}, lazy, nil); err == nil || !strings.Contains(err.Error(), "produced on write") {
		t.Fatalf("safetensors with a produced tensor: %v", err)
	}
}

// TestGGMLSizes spot-checks the block table against sizes that follow from
// the block layouts: Q4_0 is an f16 scale plus 32 4-bit values, Q8_0 an f16
// scale plus 32 bytes, Q4_K two f16 scales, 12 bytes of 6-bit sub-scales and
// 256 4-bit values, Q6_K 256 6-bit values, 16 int8 scales and an f16.
func TestGGMLSizes(t *testing.T) {
	for _, c := range []struct {
		dt          DType
		block, size int64
	}{
		{Q4_0, 32, 2 + 32/2}, {Q8_0, 32, 2 + 32}, {Q4_K, 256, 2*2 + 12 + 256/2},
		{Q6_K, 256, 256/2 + 256/4 + 256/16 + 2}, {F16, 1, 2}, {BF16, 1, 2}, {F32, 1, 4},
	} {
		if c.dt.BlockSize() != c.block || c.dt.BlockBytes() != c.size {
			t.Errorf("%v: block %d of %d bytes, want %d of %d", c.dt, c.dt.BlockSize(), c.dt.BlockBytes(), c.block, c.size)
		}
	}
	for id, want := range map[uint32]DType{0: F32, 1: F16, 30: BF16, 2: Q4_0, 12: Q4_K, 28: F64} {
		if got, ok := DTypeFromGGML(id); !ok || got != want {
			t.Errorf("DTypeFromGGML(%d) = %v, want %v", id, got, want)
		}
		if back, _ := want.GGMLType(); back != id {
			t.Errorf("%v.GGMLType() = %d, want %d", want, back, id)
		}
	}
	if _, ok := DTypeFromGGML(4); ok { // Q4_2, removed from ggml long ago
		t.Error("ggml type 4 should be unknown")
	}
}
