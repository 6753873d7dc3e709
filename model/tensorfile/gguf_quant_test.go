package tensorfile

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// Quantized tensors written with FromFloat32 + WriteGGUF come back through
// ReadGGUF with ggml's type ids, block sizes and 32-byte alignment, and
// Float32 gives the dequantized values; the header is also checked byte by
// byte, as another GGUF reader would parse it.
//
// (Over 80 lines: one file written, then its header byte by byte and each
// tensor checked.)
func TestGGUFQuantized(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	vals := make([]float32, 3*512)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() * 0.05)
	}
	var ts []Tensor
	for _, dt := range []DType{Q8_0, Q4_0, Q4_K} {
		x, err := FromFloat32("w."+dt.String(), dt, []int{3, 512}, vals)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, x)
	}
	odd, _ := FromFloat32("bias", F32, []int{5}, []float32{1, 2, 3, 4, 5}) // 20 bytes: the next tensor must be padded
	ts = append(ts[:1], append([]Tensor{odd}, ts[1:]...)...)
	meta := []KV{{"general.architecture", "gpt2"}, {"general.alignment", uint32(32)}}
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, meta, ts); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	f, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	wantID := map[DType]uint32{Q8_0: 8, Q4_0: 2, Q4_K: 12}
	wantBlock := map[DType][2]int64{Q8_0: {32, 34}, Q4_0: {32, 18}, Q4_K: {256, 144}}
	for _, x := range ts {
		info, ok := f.Tensor(x.Name)
		if !ok {
			t.Fatalf("%s missing", x.Name)
		}
		if (f.DataOffset+info.Offset)%32 != 0 && info.Offset%32 != 0 {
			t.Errorf("%s at offset %d: not 32-byte aligned", x.Name, info.Offset)
		}
		if x.DType == F32 {
			continue
		}
		if id, _ := x.DType.GGMLType(); id != wantID[x.DType] {
			t.Errorf("%v: ggml type %d, want %d", x.DType, id, wantID[x.DType])
		}
		if bs := wantBlock[x.DType]; x.DType.BlockSize() != bs[0] || x.DType.BlockBytes() != bs[1] || info.Size != 3*512/bs[0]*bs[1] {
			t.Errorf("%v: blocks of %d in %d bytes, size %d", x.DType, x.DType.BlockSize(), x.DType.BlockBytes(), info.Size)
		}
		got, err := f.Float32(x.Name)
		if err != nil {
			t.Fatal(err)
		}
		qf, _ := x.DType.QuantFormat()
		want := make([]float32, len(vals))
		quant.Dequantize(qf, want, x.Data)
		if !slices.Equal(got, want) {
			t.Errorf("%v: Float32 differs from the dequantized blocks", x.DType)
		}
		if err := f.CheckFinite(x.Name); err != nil {
			t.Errorf("%v: CheckFinite: %v", x.DType, err)
		}
		var se, ss float64
		for i := range got {
			se += float64((got[i] - vals[i]) * (got[i] - vals[i]))
			ss += float64(vals[i] * vals[i])
		}
		if rel := math.Sqrt(se / ss); rel > 0.15 {
			t.Errorf("%v: relative error %.3f of the round trip", x.DType, rel)
		}
	}
	// The raw header, parsed here independently: magic, version 3, counts,
	// then each tensor info's dims (innermost first) and ggml type id.
	if string(b[:4]) != "GGUF" || binary.LittleEndian.Uint32(b[4:]) != 3 {
		t.Fatalf("header %q v%d", b[:4], binary.LittleEndian.Uint32(b[4:]))
	}
	for _, x := range ts {
		id, _ := x.DType.GGMLType()
		name := []byte(x.Name)
		at := bytes.Index(b, append(binary.LittleEndian.AppendUint64(nil, uint64(len(name))), name...))
		if at < 0 {
			t.Fatalf("tensor info of %s not found", x.Name)
		}
		p := at + 8 + len(name)
		nd := binary.LittleEndian.Uint32(b[p:])
		dims := []uint64{}
		for i := 0; i < int(nd); i++ {
			dims = append(dims, binary.LittleEndian.Uint64(b[p+4+8*i:]))
		}
		typ := binary.LittleEndian.Uint32(b[p+4+8*int(nd):])
		wantDims := []uint64{uint64(x.Shape[len(x.Shape)-1])}
		if len(x.Shape) == 2 {
			wantDims = append(wantDims, uint64(x.Shape[0]))
		}
		if typ != id || !slices.Equal(dims, wantDims) {
			t.Errorf("%s: raw info type %d dims %v, want %d %v", x.Name, typ, dims, id, wantDims)
		}
	}
}

// Rows that are not whole blocks, block formats Chameleon does not run
// and non-finite scales are errors that name the tensor and the type.
func TestGGUFQuantizedBadInput(t *testing.T) {
	if _, err := FromFloat32("w", Q4_K, []int{2, 64}, make([]float32, 128)); err == nil || !strings.Contains(err.Error(), "whole number of Q4_K blocks") {
		t.Errorf("Q4_K rows of 64: %v", err)
	}
	q6 := Tensor{Name: "w6", DType: Q6_K, Shape: []int{1, 256}, Data: make([]byte, 210)}
	q8, _ := FromFloat32("w8", Q8_0, []int{1, 64}, make([]float32, 64))
	q8.Data[34+1] = 0x7c // block 1's scale: +Inf
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, nil, []Tensor{q6, q8}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("w6"); err == nil || !strings.Contains(err.Error(), "Q6_K") {
		t.Errorf("Float32 of Q6_K: %v, want an error naming Q6_K", err)
	}
	if err := f.CheckFinite("w8"); err == nil || !strings.Contains(err.Error(), `"w8"`) || !strings.Contains(err.Error(), "element 32") {
		t.Errorf("CheckFinite of an Inf scale: %v", err)
	}
}
