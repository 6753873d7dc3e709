package tensorfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// testTensors returns a mix of dtypes, a scalar, zero-size tensors and many
// small ones, with values that encode their position.
func testTensors(t *testing.T) []Tensor {
	t.Helper()
	var ts []Tensor
	add := func(name string, dt DType, shape []int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(i)*0.25 - 3
		}
		tt, err := FromFloat32(name, dt, shape, vals)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	add("h.0.attn.c_attn.weight", F32, []int{3, 5})
	add("h.0.attn.c_attn.bias", F16, []int{5})
	add("wte.weight", BF16, []int{4, 3, 2})
	add("scalar", F32, []int{})
	add("empty", F32, []int{0})
	add("empty2", F16, []int{3, 0, 2})
	for i := range 40 {
		add(fmt.Sprintf("many.%02d", i), []DType{F32, F16, BF16}[i%3], []int{i%5 + 1, 2})
	}
	ts = append(ts, Tensor{Name: "ids", DType: I32, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}})
	return ts
}

func writeST(t *testing.T, ts []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, ts, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readST(t *testing.T, b []byte) *File {
	t.Helper()
	f, err := ReadSafetensors(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSafetensorsRoundTrip(t *testing.T) {
	ts := testTensors(t)
	meta := map[string]string{"format": "pt", "note": "ünïcode <&> \"quoted\""}
	b := writeST(t, ts, meta)
	f := readST(t, b)
	if f.HeaderSize%8 != 0 {
		t.Errorf("header size %d is not a multiple of 8", f.HeaderSize)
	}
	if !maps.Equal(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if !slices.IsSorted(f.Names()) || len(f.Names()) != len(ts) {
		t.Fatalf("names %v not sorted or wrong count", f.Names())
	}
	prevEnd := 8 + f.HeaderSize
	for i, name := range f.Names() {
		info := f.Tensors[i]
		if info.Name != name {
			t.Fatalf("Tensors[%d] = %q, Names()[%d] = %q", i, info.Name, i, name)
		}
		if info.Offset != prevEnd {
			t.Errorf("%q at %d, want packed at %d in sorted order", name, info.Offset, prevEnd)
		}
		prevEnd = info.Offset + info.Size
	}
	for _, want := range ts {
		info, ok := f.Info(want.Name)
		if !ok || info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) || info.Size != int64(len(want.Data)) {
			t.Fatalf("info %+v, want %v %v %d bytes", info, want.DType, want.Shape, len(want.Data))
		}
		raw, err := f.Raw(want.Name)
		if err != nil || !bytes.Equal(raw, want.Data) {
			t.Fatalf("Raw(%q) = %x, %v, want %x", want.Name, raw, err, want.Data)
		}
		if want.DType == I32 {
			continue
		}
		got, err := f.Float32(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != info.NumElements() {
			t.Fatalf("Float32(%q) has %d values, want %d", want.Name, len(got), info.NumElements())
		}
		for j, v := range got {
			// The test values are exact in every dtype (multiples of 1/4 below 16).
			if exact := float32(j)*0.25 - 3; v != exact {
				t.Fatalf("Float32(%q)[%d] = %v, want %v", want.Name, j, v, exact)
			}
		}
		if err := f.CheckFinite(want.Name); err != nil {
			t.Error(err)
		}
	}
	// Writing what was read gives the same bytes.
	again := make([]Tensor, 0, len(ts))
	for _, info := range f.Tensors {
		raw, _ := f.Raw(info.Name)
		again = append(again, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	if b2 := writeST(t, again, f.Metadata); !bytes.Equal(b, b2) {
		t.Error("rewriting the file read back changed its bytes")
	}
}

// TestSafetensorsBitExact checks that arbitrary bit patterns, NaN payloads
// included, survive a round trip in every float dtype.
func TestSafetensorsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 4*64)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	ts := []Tensor{
		{Name: "a", DType: F32, Shape: []int{8, 8}, Data: data},
		{Name: "b", DType: F16, Shape: []int{128}, Data: data},
		{Name: "c", DType: BF16, Shape: []int{2, 64}, Data: data},
	}
	f := readST(t, writeST(t, ts, nil))
	if len(f.Metadata) != 0 {
		t.Errorf("metadata %v, want none", f.Metadata)
	}
	for _, want := range ts {
		raw, _ := f.Raw(want.Name)
		if !bytes.Equal(raw, want.Data) {
			t.Errorf("%q changed", want.Name)
		}
		vals, err := f.Float32(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromFloat32(want.Name, want.DType, want.Shape, vals)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Data, want.Data) {
			t.Errorf("%q: Float32 then FromFloat32 is not bit-exact", want.Name)
		}
	}
}

// st builds a safetensors file from a literal header and data section.
func st(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestSafetensorsValidation(t *testing.T) {
	zeros := make([]byte, 64)
	absurd := binary.LittleEndian.AppendUint64(nil, 200<<20)
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "shorter than the 8-byte header length"},
		{"header past file", st(`{}`, nil)[:9], "header length 2 runs past the end of the 9-byte file"},
		{"absurd header", append(absurd, zeros...), "exceeds the 104857600-byte limit"},
		{"bad json", st(`{"a":`, nil), "invalid JSON"},
		{"not object", st(`[1,2]`, nil), "want a JSON object"},
		{"trailing", st(`{} x`, nil), "unexpected bytes after the JSON object"},
		{"utf8", st("{\"\xff\":1}", nil), "not valid UTF-8"},
		{"unknown dtype", st(`{"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}`, zeros), `tensor "a": unknown dtype "F99"`},
		{"dtype not string", st(`{"a":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}`, zeros), `dtype 3 is not a string`},
		{"missing field", st(`{"a":{"dtype":"F32","shape":[1]}}`, zeros), `tensor "a": entry needs dtype, shape and data_offsets`},
		{"null shape", st(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, zeros), `shape: null is not an array`},
		{"negative dim", st(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,4]}}`, zeros), `tensor "a": shape: element 0 is negative (-2)`},
		{"fractional dim", st(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, zeros), `element 0 (1.5) is not an integer`},
		{"huge dim", st(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}`, zeros), `is not an integer in [0, 2^63)`},
		{"overflow", st(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, zeros), `tensor "a": shape 4294967296x4294967296 F32: element count overflows`},
		{"bytes overflow", st(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, zeros), `need more than`},
		{"span", st(`{"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}}`, zeros),
			`safetensors: tensor "h.0.attn.c_attn.weight": data_offsets [0,8) span 8 bytes, want 2x3 F32 = 24`},
		{"span scalar", st(`{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}}`, zeros), `span 4 bytes, want scalar BF16 = 2`},
		{"three offsets", st(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, zeros), `must be [begin, end]`},
		{"reversed", st(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, zeros), `[8,4) end before they begin`},
		{"out of range", st(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[60,68]}}`, zeros), `data_offsets [60,68) run past the 64-byte data section`},
		{"overlap", st(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, zeros),
			`tensors "a" [`},
		{"duplicate", st(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, zeros), `key "a" appears twice`},
		{"duplicate field", st(`{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, zeros), `key "dtype" appears twice`},
		{"metadata type", st(`{"__metadata__":{"a":1}}`, nil), `__metadata__ must map strings to strings`},
	} {
		_, err := ReadSafetensors(bytes.NewReader(c.file), int64(len(c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestSafetensorsAccepts(t *testing.T) {
	zeros := make([]byte, 64)
	for _, c := range []struct{ name, header string }{
		{"gap", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}`},
		{"empty inside another", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}`},
		{"unknown field", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":true}}`},
		{"null metadata", `{"__metadata__":null}`},
		{"known unsupported", `{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[8,11]}}`},
		{"zero dim with huge dim", `{"a":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}}`},
	} {
		b := st(c.header, zeros)
		if _, err := ReadSafetensors(bytes.NewReader(b), int64(len(b))); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestSafetensorsData(t *testing.T) {
	vals := []float32{1, 2, 3, float32(math.NaN()), 5, 6}
	var ts []Tensor
	for _, dt := range []DType{F32, F16, BF16} {
		tt, err := FromFloat32("x."+dt.String(), dt, []int{2, 3}, vals)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	inf := []float32{0, float32(math.Inf(-1))}
	tt, _ := FromFloat32("inf", F16, []int{2}, inf)
	ts = append(ts, tt)
	tt, _ = FromFloat32("big", F16, []int{1}, []float32{1e9}) // overflows F16 to Inf
	ts = append(ts, tt)
	ts = append(ts, Tensor{Name: "f64", DType: F64, Shape: []int{1}, Data: binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.NaN()))})
	ts = append(ts, Tensor{Name: "u8", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}})
	ts = append(ts, Tensor{Name: "f8", DType: F8E5M2, Shape: []int{1}, Data: []byte{0x7c}})
	b := writeST(t, ts, nil)
	f := readST(t, b)
	for _, dt := range []DType{F32, F16, BF16} {
		err := f.CheckFinite("x." + dt.String())
		if want := fmt.Sprintf(`tensor "x.%v" (%v 2x3): element 3 is NaN`, dt, dt); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFinite: %v, want %q", err, want)
		}
	}
	for name, want := range map[string]string{
		"inf": "element 1 is -Inf", "big": "element 0 is +Inf", "f64": "element 0 is NaN",
		"f8": "which CheckFinite does not support",
	} {
		if err := f.CheckFinite(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFinite(%q) = %v, want %q", name, err, want)
		}
	}
	if err := f.CheckFinite("u8"); err != nil {
		t.Error(err)
	}
	if _, err := f.Float32("f64"); err == nil || !strings.Contains(err.Error(), `tensor "f64" has dtype F64, which Float32 does not support`) {
		t.Errorf("Float32(f64): %v", err)
	}
	if raw, err := f.Raw("u8"); err != nil || !bytes.Equal(raw, []byte{1, 2, 3}) {
		t.Errorf("Raw(u8) = %v, %v", raw, err)
	}
	if _, err := f.Raw("nope"); err == nil || !strings.Contains(err.Error(), `no tensor "nope"`) {
		t.Errorf("Raw(nope): %v", err)
	}
	// A reader shorter than the size it was opened with: data reads fail
	// with the tensor's name rather than returning zeros.
	short := b[:len(b)-4]
	g, err := ReadSafetensors(bytes.NewReader(short), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	last := g.Names()[len(g.Names())-1]
	if _, err := g.Raw(last); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Raw of a truncated tensor: %v", err)
	}
}

// TestFloat32Chunks decodes a tensor larger than the chunk buffer.
func TestFloat32Chunks(t *testing.T) {
	n := chunkBytes/2 + 777
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i % 2048)
	}
	tt, err := FromFloat32("big", F16, []int{n}, vals)
	if err != nil {
		t.Fatal(err)
	}
	f := readST(t, writeST(t, []Tensor{tt}, nil))
	got, err := f.Float32("big")
	if err != nil || !slices.Equal(got, vals) {
		t.Fatalf("Float32 of a multi-chunk tensor differs (err %v)", err)
	}
	if err := f.CheckFinite("big"); err != nil {
		t.Fatal(err)
	}
}

// TestHalf reads an F16 tensor larger than the chunk buffer as its halves,
// which widen to Float32's values; other dtypes are refused by name.
func TestHalf(t *testing.T) {
	n := chunkBytes/2 + 333
	rng := rand.New(rand.NewPCG(7, 7))
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	h16, err := FromFloat32("h", F16, []int{n}, vals)
	if err != nil {
		t.Fatal(err)
	}
	f32, err := FromFloat32("w", F32, []int{3}, vals[:3])
	if err != nil {
		t.Fatal(err)
	}
	f := readST(t, writeST(t, []Tensor{h16, f32}, nil))
	got, err := f.Half("h")
	if err != nil || len(got) != n {
		t.Fatalf("Half: %d values, err %v; want %d", len(got), err, n)
	}
	wide, err := f.Float32("h")
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range got {
		if F16ToF32(h) != wide[i] || h != F32ToF16(vals[i]) {
			t.Fatalf("Half[%d] = %#04x (%v), Float32 gives %v, the value was %v", i, h, F16ToF32(h), wide[i], vals[i])
		}
	}
	if _, err := f.Half("w"); err == nil || !strings.Contains(err.Error(), `"w" has dtype F32, not F16`) {
		t.Errorf("Half of an F32 tensor: %v", err)
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	ok := Tensor{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}
	for _, c := range []struct {
		name string
		ts   []Tensor
		meta map[string]string
		want string
	}{
		{"dup", []Tensor{ok, ok}, nil, `tensor name "a" appears twice`},
		{"reserved", []Tensor{{Name: "__metadata__", DType: F32, Shape: []int{}, Data: make([]byte, 4)}}, nil, `invalid tensor name`},
		{"utf8 name", []Tensor{{Name: "\xff", DType: F32, Shape: []int{}, Data: make([]byte, 4)}}, nil, `invalid tensor name`},
		{"utf8 meta", []Tensor{ok}, map[string]string{"k": "\xfe"}, `not valid UTF-8`},
		{"size", []Tensor{{Name: "w", DType: F16, Shape: []int{2, 3}, Data: make([]byte, 4)}}, nil, `tensor "w": 4 bytes of data, want 2x3 F16 = 12`},
		{"negative", []Tensor{{Name: "w", DType: F16, Shape: []int{-1}}}, nil, `negative dim`},
		{"quantized", []Tensor{{Name: "q", DType: Q4_0, Shape: []int{32}, Data: make([]byte, 18)}}, nil, `dtype Q4_0 has no safetensors encoding`},
		{"invalid", []Tensor{{Name: "q", Shape: []int{1}}}, nil, `has no safetensors encoding`},
	} {
		err := WriteSafetensors(&bytes.Buffer{}, c.ts, c.meta)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := FromFloat32("x", I32, []int{1}, []float32{1}); err == nil {
		t.Error("FromFloat32 to I32 succeeded")
	}
	if _, err := FromFloat32("x", F32, []int{2}, []float32{1}); err == nil || !strings.Contains(err.Error(), "holds 2 values, got 1") {
		t.Errorf("FromFloat32 count mismatch: %v", err)
	}
}
