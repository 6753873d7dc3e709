package gpu

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// settleCase uploads one weight matrix (N, K) of dtype dt: f16 as halves,
// the others from float32 (quantized on the host), with Write or (direct)
// WriteSettled. It returns the tensor and its weights as the device holds
// them (read back, or for a direct write computed on the host), and the
// device's memory after the Alloc.
func settleCase(t *testing.T, w *WebGPU, dt DType, n, k int, rnd func(int) []float32, direct bool) (Tensor, []float32, MemStats) {
	t.Helper()
	wt := Must(w.Alloc(dt, n, k))
	alloc := w.MemStats()
	vals := rnd(n * k)
	var data any = vals
	if dt == F16 {
		h := make([]uint16, len(vals))
		for i, v := range vals {
			h[i] = F32ToF16(v)
		}
		data = h
	}
	if direct {
		if settled, err := w.WriteSettled(wt, data); err != nil || !settled {
			t.Fatalf("%v: WriteSettled = %v, %v", dt, settled, err)
		}
		held := vals
		if f, ok := dt.Quant(); ok {
			held = make([]float32, len(vals))
			quant.Dequantize(f, held, Must(QuantBlocks(dt, []int{n, k}, vals)))
		} else if dt == F16 {
			held = make([]float32, len(vals))
			for i, v := range vals {
				held[i] = RoundF16(v)
			}
		}
		return wt, held, alloc
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
	return wt, held, alloc
}

// TestSettleWeight: on the texture matmuls, a settled weight matrix (by
// SettleWeight after a Write, or written by WriteSettled) keeps exactly
// one device copy (its texture: the storage buffer's bytes leave the
// device, a texture of the matrix's own size stays), MatMul on it gives
// the reference at a decode and a prefill row count, every op that would
// read its buffer fails saying why, and Free releases the texture.
func TestSettleWeight(t *testing.T) {
	w := texDevice(t)
	rnd := normals(17)
	const n, k = 64, 256 // whole texture blocks: the texture has no padding
	for _, c := range []struct {
		dt     DType
		direct bool
	}{{F32, false}, {F16, false}, {Q8_0, false}, {Q4_0, false}, {F32, true}, {F16, true}, {Q8_0, true}, {Q4_0, true}, {Q4_K, true}} {
		dt := c.dt
		wt, held, alloc := settleCase(t, w, dt, n, k, rnd, c.direct)
		matmul := func(m int, xs []float32) []float32 {
			x, dst := Must(w.Alloc(F32, m, k)), Must(w.Alloc(F32, m, n))
			defer w.Free(x)
			defer w.Free(dst)
			return matMulOf(t, w, dst, x, wt, xs, nil)
		}
		x1, x12 := rnd(k), rnd(12*k)
		// Before the settle: the written buffer (and its texture copy if a
		// MatMul had made one; none has). A direct write's staging buffer
		// may be a pooled one, which it destroys too: at most, then.
		before, bufSize := w.MemStats(), sizeClass(storageBytes(dt, []int{n, k}))
		if c.direct {
			before = alloc
		} else if settled, err := w.SettleWeight(wt); err != nil || !settled {
			t.Fatalf("%v: SettleWeight = %v, %v", dt, settled, err)
		}
		after := w.MemStats()
		if after.BufferBytes != before.BufferBytes-bufSize && (!c.direct || after.BufferBytes > before.BufferBytes-bufSize) {
			t.Errorf("%v: buffers %d -> %d bytes, want the weight's %d gone", dt, before.BufferBytes, after.BufferBytes, bufSize)
		}
		if got, want := after.TextureBytes-before.TextureBytes, storageBytes(dt, []int{n, k}); got != want {
			t.Errorf("%v: the settled matrix holds %d texture bytes, want one copy: %d", dt, got, want)
		}
		for _, r := range []struct {
			m  int
			xs []float32
		}{{1, x1}, {12, x12}} {
			got := matmul(r.m, r.xs)
			want := refMatMul(r.xs, held, r.m, k, n, false)
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%v (direct %v), M=%d, settled: dst[%d] = %v, want %v", dt, c.direct, r.m, i, got[i], want[i])
				}
			}
		}
		for what, err := range map[string]error{"ReadF32": second(w.ReadF32(wt)), "Write": w.Write(wt, rnd(n*k))} {
			if err == nil || !strings.Contains(err.Error(), "held only as its texture copy") {
				t.Errorf("%v: %s of a settled weight: %v", dt, what, err)
			}
		}
		// Ops that read the buffer: a copy, and (quantized) the register
		// kernels the batch-invariant server runs.
		if dt == F32 || dt == F16 {
			other := Must(w.Alloc(dt, n, k))
			expectPanic(t, "gpu: Copy: the "+dt.String(), func() { w.Copy(other, wt) })
			w.Free(other)
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
	wt, _, _ := settleCase(t, w, F16, 8, 32, normals(3), false)
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

// TestEmbedSettled: Embed with a settled wte (embed_tex_*.wgsl, gathering
// from the texture) gives exactly the stored rows plus wpe's, as Embed of
// the same table from its buffer does, at widths that are not whole
// texels, a vocabulary that is not whole 32-row blocks, and tokens outside
// the vocabulary (their rows left alone).
func TestEmbedSettled(t *testing.T) {
	w := texDevice(t)
	rnd := normals(23)
	const v, p = 70, 9
	for _, dt := range []DType{F32, F16} {
		for _, c := range []int{37, 40} {
			wte, held, _ := settleCase(t, w, dt, v, c, rnd, false)
			plain := Must(w.Alloc(dt, v, c))
			if err := w.Write(plain, held); err != nil {
				t.Fatal(err)
			}
			wpe, wpeHeld, _ := settleCase(t, w, dt, p, c, rnd, false)
			if settled, err := w.SettleWeight(wte); err != nil || !settled {
				t.Fatalf("%v: SettleWeight = %v, %v", dt, settled, err)
			}
			toks := []int32{3, 69, -1, 0, 70, 33, 32, 64}
			pos := []int32{0, 8, 1, 2, 3, 4, 5, 6}
			tk, ps := Must(w.Alloc(I32, len(toks))), Must(w.Alloc(I32, len(toks)))
			if err := w.Write(tk, toks); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(ps, pos); err != nil {
				t.Fatal(err)
			}
			poison := make([]float32, len(toks)*c)
			for i := range poison {
				poison[i] = -777
			}
			for _, table := range []struct {
				name string
				x    Tensor
			}{{"texture", wte}, {"buffer", plain}} {
				dst := Must(w.Alloc(F32, len(toks), c))
				if err := w.Write(dst, poison); err != nil {
					t.Fatal(err)
				}
				w.Embed(dst, table.x, wpe, tk, ps)
				got, err := w.ReadF32(dst)
				if err != nil {
					t.Fatal(err)
				}
				for m, tok := range toks {
					for j := 0; j < c; j++ {
						want := float32(-777)
						if tok >= 0 && tok < v {
							want = held[int(tok)*c+j] + wpeHeld[int(pos[m])*c+j]
						}
						if g := got[m*c+j]; g != want {
							t.Fatalf("%v, C=%d, from its %s: dst[%d,%d] (token %d) = %v, want %v", dt, c, table.name, m, j, tok, g, want)
						}
					}
				}
				w.Free(dst)
			}
			for _, x := range []Tensor{wte, plain, wpe, tk, ps} {
				w.Free(x)
			}
		}
	}
}

// TestWriteSettledChunks: a matrix larger than one upload chunk reaches its
// texture a chunk of rows at a time (the last chunk not whole 32-row
// blocks), and MatMul on it gives the reference.
func TestWriteSettledChunks(t *testing.T) {
	w := texDevice(t)
	rnd := normals(29)
	for _, c := range []struct {
		dt   DType
		n, k int
	}{{F32, 1100, 256}, {F16, 2100, 250}} {
		if rows := storageBytes(c.dt, []int{c.n, c.k}); rows <= writeChunk {
			t.Fatalf("%v (%d, %d) is %d bytes, not over one chunk", c.dt, c.n, c.k, rows)
		}
		wt, held, _ := settleCase(t, w, c.dt, c.n, c.k, rnd, true)
		const m = 3
		xs := rnd(m * c.k)
		x, dst := Must(w.Alloc(F32, m, c.k)), Must(w.Alloc(F32, m, c.n))
		got := matMulOf(t, w, dst, x, wt, xs, nil)
		want := refMatMul(xs, held, m, c.k, c.n, false)
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%v (%d, %d): dst[%d] = %v, want %v", c.dt, c.n, c.k, i, got[i], want[i])
			}
		}
		for _, x := range []Tensor{wt, x, dst} {
			w.Free(x)
		}
	}
}

func second[T any](_ T, err error) error { return err }
