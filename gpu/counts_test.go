package gpu_test

import (
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// TestCounts: a known op sequence records a known number of dispatches,
// passes and submits. Three ops share one compute pass; the read-back's copy
// closes it and submits; the op after it opens a second pass, submitted by
// Flush. An op on an empty tensor dispatches nothing and is not counted.
// The read-back and a write count their bytes.
func TestCounts(t *testing.T) {
	w := gputest.Backend(t)
	a := gpu.Must(w.Alloc(gpu.F32, 5))
	b := gpu.Must(w.Alloc(gpu.F32, 5))
	c := gpu.Must(w.Alloc(gpu.F32, 5))
	empty := gpu.Must(w.Alloc(gpu.F32, 0))
	empty2 := gpu.Must(w.Alloc(gpu.F32, 0))
	defer func() {
		for _, x := range []gpu.Tensor{a, b, c, empty, empty2} {
			w.Free(x)
		}
	}()
	if err := w.Write(a, []float32{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c0 := w.Counts()
	w.Add(b, a, a)
	w.GELU(c, b)
	w.Add(b, c, a)
	w.GELU(empty2, empty)
	if _, err := w.ReadF32(b); err != nil {
		t.Fatal(err)
	}
	mid := w.Counts().Sub(c0)
	if want := (gpu.Counts{Dispatches: 3, Passes: 1, Submits: 1, ReadBytes: 20}); mid != want {
		t.Errorf("three ops and a read-back recorded %+v, want %+v", mid, want)
	}
	w.GELU(c, b)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Counts().Sub(c0), (gpu.Counts{Dispatches: 4, Passes: 2, Submits: 2, ReadBytes: 20}); got != want {
		t.Errorf("after one more op and a flush: %+v, want %+v", got, want)
	}
	c1 := w.Counts()
	if err := w.Write(a, []float32{5, 4, 3, 2, 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Counts().Sub(c1), (gpu.Counts{WrittenBytes: 20}); got != want {
		t.Errorf("a write of five floats: %+v, want %+v", got, want)
	}
	var _ gpu.Counter = w
}
