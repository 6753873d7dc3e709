package tensorfile

import (
	"bytes"
	"runtime/metrics"
	"slices"
	"testing"
)

// allocBound is how many bytes a reader may allocate for an input of n
// bytes: a constant for buffers plus a multiple of the input, which is what
// bounding every count by the bytes left guarantees.
func allocBound(n int) uint64 { return 1<<20 + 64*uint64(n) }

// heapAllocs returns the bytes allocated by the process so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// seeds adds every valid file and some truncations of each.
func seeds(f *testing.F, files ...[]byte) {
	for _, b := range files {
		f.Add(b)
		for _, n := range []int{0, 4, 8, 9, 16, 24, 31, len(b) / 3, len(b) / 2, len(b) - 1} {
			if n >= 0 && n < len(b) {
				f.Add(b[:n])
			}
		}
	}
}

func smallTensors(f *testing.F) []Tensor {
	var ts []Tensor
	for i, dt := range []DType{F32, F16, BF16} {
		tt, err := FromFloat32("t"+dt.String(), dt, []int{2, i + 1}, make([]float32, 2*(i+1)))
		if err != nil {
			f.Fatal(err)
		}
		ts = append(ts, tt)
	}
	return append(ts, Tensor{Name: "s", DType: F32, Shape: []int{}, Data: make([]byte, 4)},
		Tensor{Name: "z", DType: F16, Shape: []int{0, 3}})
}

func FuzzReadSafetensors(f *testing.F) {
	var a, b bytes.Buffer
	if err := WriteSafetensors(&a, smallTensors(f), map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	if err := WriteSafetensors(&b, nil, nil); err != nil {
		f.Fatal(err)
	}
	seeds(f, a.Bytes(), b.Bytes(), st(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"I8","shape":[2],"data_offsets":[8,10]}}`, make([]byte, 12)))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocs()
		file, err := ReadSafetensors(bytes.NewReader(data), int64(len(data)))
		if got := heapAllocs() - before; got > allocBound(len(data)) {
			t.Fatalf("reading %d bytes allocated %d bytes", len(data), got)
		}
		if err != nil {
			return
		}
		var ts []Tensor
		for _, info := range file.Tensors {
			raw, err := file.Raw(info.Name)
			if err != nil {
				t.Fatalf("Raw(%q) of an accepted file: %v", info.Name, err)
			}
			if info.DType.Float32Decodable() {
				if vals, err := file.Float32(info.Name); err != nil || int64(len(vals)) != info.NumElements() {
					t.Fatalf("Float32(%q): %d values, %v", info.Name, len(vals), err)
				}
			}
			_ = file.CheckFinite(info.Name)
			ts = append(ts, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
		var out bytes.Buffer
		if err := WriteSafetensors(&out, ts, file.Metadata); err != nil {
			t.Fatalf("rewriting an accepted file: %v", err)
		}
		again, err := ReadSafetensors(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("re-reading a rewritten file: %v", err)
		}
		if !slices.Equal(again.Names(), file.Names()) || len(again.Metadata) != len(file.Metadata) {
			t.Fatalf("names %q metadata %v became %q %v", file.Names(), file.Metadata, again.Names(), again.Metadata)
		}
		for k, v := range file.Metadata {
			if again.Metadata[k] != v {
				t.Fatalf("metadata %q: %q became %q", k, v, again.Metadata[k])
			}
		}
		for i, want := range ts {
			got := again.Tensors[i]
			raw, _ := again.Raw(got.Name)
			if got.Name != want.Name || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(raw, want.Data) {
				t.Fatalf("tensor %q changed in the round trip: %+v", want.Name, got)
			}
		}
	})
}

func FuzzReadGGUF(f *testing.F) {
	meta := []KV{{"general.architecture", "gpt2"}, {"n", uint32(3)}, {"f", float32(2)},
		{"toks", []string{"a", "bc"}}, {"nest", []any{[]int8{1}, []any{}}}, {"b", true}}
	var a, b, c bytes.Buffer
	ts := append(smallTensors(f), Tensor{Name: "q", DType: Q8_0, Shape: []int{1, 32}, Data: make([]byte, 34)})
	// Real blocks of each format Float32 dequantizes.
	vals := make([]float32, 256)
	for i := range vals {
		vals[i] = float32(i%7) - 3
	}
	for _, dt := range []DType{Q8_0, Q4_0, Q4_K} {
		q, err := FromFloat32("q"+dt.String(), dt, []int{1, 256}, vals)
		if err != nil {
			f.Fatal(err)
		}
		ts = append(ts, q)
	}
	if err := WriteGGUF(&a, meta, ts); err != nil {
		f.Fatal(err)
	}
	if err := WriteGGUF(&b, nil, nil); err != nil {
		f.Fatal(err)
	}
	if err := WriteGGUF(&c, []KV{{"general.alignment", uint32(8)}}, ts[:2]); err != nil {
		f.Fatal(err)
	}
	seeds(f, a.Bytes(), b.Bytes(), c.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocs()
		file, err := ReadGGUF(bytes.NewReader(data), int64(len(data)))
		if got := heapAllocs() - before; got > allocBound(len(data)) {
			t.Fatalf("reading %d bytes allocated %d bytes", len(data), got)
		}
		if err != nil {
			return
		}
		var ts []Tensor
		for _, info := range file.Tensors {
			raw, err := file.Raw(info.Name)
			if err != nil {
				t.Fatalf("Raw(%q) of an accepted file: %v", info.Name, err)
			}
			if info.DType.Float32Decodable() {
				if vals, err := file.Float32(info.Name); err != nil || int64(len(vals)) != info.NumElements() {
					t.Fatalf("Float32(%q): %d values, %v", info.Name, len(vals), err)
				}
			}
			_ = file.CheckFinite(info.Name)
			ts = append(ts, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
		var out bytes.Buffer
		if err := WriteGGUF(&out, file.KV, ts); err != nil {
			t.Fatalf("rewriting an accepted file: %v", err)
		}
		again, err := ReadGGUF(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("re-reading a rewritten file: %v", err)
		}
		if !sameKV(again.KV, file.KV) || again.Alignment != file.Alignment || len(again.Tensors) != len(ts) {
			t.Fatalf("metadata or tensor count changed in the round trip")
		}
		for i, want := range ts {
			got := again.Tensors[i]
			raw, _ := again.Raw(got.Name)
			if got.Name != want.Name || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) ||
				!slices.Equal(got.Dims, file.Tensors[i].Dims) || !bytes.Equal(raw, want.Data) {
				t.Fatalf("tensor %q changed in the round trip: %+v", want.Name, got)
			}
		}
	})
}
