package gpu_test

import (
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// WriteAt changes exactly the elements it is given, after the kernels
// recorded before it, on WebGPU and the reference backend; bad ranges and
// dtypes are errors.
func TestWriteAt(t *testing.T) {
	for _, b := range []gpu.Backend{gputest.Backend(t), ref.New()} {
		rw := b.(gpu.RangeWriter)
		f := gpu.Must(b.Alloc(gpu.F32, 3, 5))
		i := gpu.Must(b.Alloc(gpu.I32, 7))
		base := make([]float32, 15)
		for k := range base {
			base[k] = float32(100 + k)
		}
		src := gpu.Must(b.Alloc(gpu.F32, 3, 5))
		if err := b.Write(src, base); err != nil {
			t.Fatal(err)
		}
		if err := b.Write(f, make([]float32, 15)); err != nil {
			t.Fatal(err)
		}
		b.Add(f, src, src) // recorded before the write: it must not overwrite it
		if err := rw.WriteAt(f, 6, []float32{-1, -2, -3}); err != nil {
			t.Fatal(err)
		}
		if err := b.Write(i, []int32{0, 1, 2, 3, 4, 5, 6}); err != nil {
			t.Fatal(err)
		}
		if err := rw.WriteAt(i, 5, []int32{-7, -8}); err != nil {
			t.Fatal(err)
		}
		gotF, err := b.ReadF32(f)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, 15)
		for k := range want {
			want[k] = 2 * base[k]
		}
		copy(want[6:], []float32{-1, -2, -3})
		if !slices.Equal(gotF, want) {
			t.Errorf("%s: f32 %v, want %v", b.Name(), gotF, want)
		}
		gotI, err := b.ReadI32(i)
		if err != nil {
			t.Fatal(err)
		}
		if wantI := []int32{0, 1, 2, 3, 4, -7, -8}; !slices.Equal(gotI, wantI) {
			t.Errorf("%s: i32 %v, want %v", b.Name(), gotI, wantI)
		}
		for _, bad := range []struct {
			t    gpu.Tensor
			off  int
			data any
		}{{f, 13, []float32{1, 2, 3}}, {f, -1, []float32{1}}, {f, 0, []int32{1}}, {i, 0, []float32{1}}} {
			if err := rw.WriteAt(bad.t, bad.off, bad.data); err == nil {
				t.Errorf("%s: WriteAt(%v at %d, %T) accepted", b.Name(), bad.t.Shape(), bad.off, bad.data)
			}
		}
		for _, x := range []gpu.Tensor{f, i, src} {
			b.Free(x)
		}
	}
}
