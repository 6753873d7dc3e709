package gpu

import (
	"math"
	"strings"
	"testing"
)

// settleCase uploads one weight matrix (N, K) of dtype dt: f16 as halves,
// the others from float32 (quantized on the host). It returns the tensor
// and its weights as the device holds them (read back before any settle).
func settleCase(t *testing.T, w *WebGPU, dt DType, n, k int, rnd func(int) []float32) (Tensor, []float32) {
	t.Helper()
	wt := Must(w.Alloc(dt, n, k))
	vals := rnd(n * k)
	var data any = vals
	if dt == F16 {
		h := make([]uint16, len(vals))
		for i, v := range vals {
			h[i] = F32ToF16(v)
		}
		data = h
	}
	if err := w.Write(wt, data); err != nil {
		t.Fatal(err)
	}
	held, err := w.ReadF32(wt)
	if err != nil {
		t.Fatal(err)
	}
	if dt == F16 {
		for i, v := range vals {
			if held[i] != RoundF16(v) {
				t.Fatalf("f16 written as halves: element %d reads %v, want %v", i, held[i], RoundF16(v))
			}
		}
	}
	return wt, held
}

// TestSettleWeight: on the texture matmuls, a settled weight matrix keeps
// exactly one device copy (its texture: the storage buffer's bytes leave
// the device, a texture of the matrix's own size stays), MatMul on it gives
// what it gave before at a decode and a prefill row count, every op that
// would read its buffer fails saying why, and Free releases the texture.
func TestSettleWeight(t *testing.T) {
	w := texDevice(t)
	rnd := normals(17)
	const n, k = 64, 256 // whole texture blocks: the texture has no padding
	for _, dt := range []DType{F32, F16, Q8_0, Q4_0} {
		wt, held := settleCase(t, w, dt, n, k, rnd)
		matmul := func(m int, xs []float32) []float32 {
			x, dst := Must(w.Alloc(F32, m, k)), Must(w.Alloc(F32, m, n))
			defer w.Free(x)
			defer w.Free(dst)
			return matMulOf(t, w, dst, x, wt, xs, nil)
		}
		x1, x12 := rnd(k), rnd(12*k)
		before := w.MemStats()
		bufSize := w.t(wt).buf.size
		settled, err := w.SettleWeight(wt)
		if err != nil || !settled {
			t.Fatalf("%v: SettleWeight = %v, %v", dt, settled, err)
		}
		after := w.MemStats()
		if after.BufferBytes != before.BufferBytes-bufSize {
			t.Errorf("%v: buffers %d -> %d bytes, want the weight's %d gone", dt, before.BufferBytes, after.BufferBytes, bufSize)
		}
		if got, want := after.TextureBytes-before.TextureBytes, storageBytes(dt, []int{n, k}); got != want {
			t.Errorf("%v: the settled matrix holds %d texture bytes, want one copy: %d", dt, got, want)
		}
		for _, c := range []struct {
			m  int
			xs []float32
		}{{1, x1}, {12, x12}} {
			got := matmul(c.m, c.xs)
			want := refMatMul(c.xs, held, c.m, k, n, false)
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%v, M=%d, settled: dst[%d] = %v, want %v", dt, c.m, i, got[i], want[i])
				}
			}
		}
		for what, err := range map[string]error{"ReadF32": second(w.ReadF32(wt)), "Write": w.Write(wt, rnd(n*k))} {
			if err == nil || !strings.Contains(err.Error(), "held only as its texture copy") {
				t.Errorf("%v: %s of a settled weight: %v", dt, what, err)
			}
		}
		// Ops that read the buffer: Embed's gather, and (quantized) the
		// register kernels the batch-invariant server runs.
		if dt == F32 || dt == F16 {
			wpe := Must(w.Alloc(dt, 4, k))
			tok, pos, dst := Must(w.Alloc(I32, 1)), Must(w.Alloc(I32, 1)), Must(w.Alloc(F32, 1, k))
			expectPanic(t, "gpu: Embed: the "+dt.String(), func() { w.Embed(dst, wt, wpe, tok, pos) })
			for _, x := range []Tensor{wpe, tok, pos, dst} {
				w.Free(x)
			}
		} else {
			w.BatchInvariant = true
			expectPanic(t, "gpu: MatMul: the "+dt.String(), func() { matmul(1, x1) })
			w.BatchInvariant = false
		}
		pre := w.MemStats()
		w.Free(wt)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if post := w.MemStats(); pre.TextureBytes-post.TextureBytes != storageBytes(dt, []int{n, k}) || post.BufferBytes != pre.BufferBytes {
			t.Errorf("%v: Free of a settled weight: %+v -> %+v, want its texture's %d bytes gone", dt, pre, post, storageBytes(dt, []int{n, k}))
		}
	}
}

// TestSettleWeightElsewhere: where MatMul reads the storage buffer (the
// register kernels), SettleWeight changes nothing and says so.
func TestSettleWeightElsewhere(t *testing.T) {
	w := device(t)
	old := w.MatMulVariant
	w.MatMulVariant = MatMulReg
	defer func() { w.MatMulVariant = old }()
	wt, _ := settleCase(t, w, F16, 8, 32, normals(3))
	defer w.Free(wt)
	before := w.MemStats()
	if settled, err := w.SettleWeight(wt); settled || err != nil {
		t.Fatalf("SettleWeight under the register kernels = %v, %v; want false, nil", settled, err)
	}
	if after := w.MemStats(); after != before {
		t.Errorf("device memory changed: %+v -> %+v", before, after)
	}
	if _, err := w.ReadF32(wt); err != nil {
		t.Errorf("an unsettled weight's ReadF32: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }
