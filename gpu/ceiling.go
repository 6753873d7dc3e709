package gpu

import (
	"fmt"
	"time"
)

// Ceilings are the adapter's measured best: the matmul rate and the copy
// bandwidth every kernel is reported against.
type Ceilings struct {
	MatMulGFLOPs float64 `json:"matmul_gflops"` // 256x768x3072 f32 matmul with the adapter's default variant
	CopyGBs      float64 `json:"copy_gbs"`      // 64 MiB vec4 copy, bytes read + written per second
}

// MeasureCeilings times a GPT-2-sized matmul and a 64 MiB copy, best of
// reps runs each (after a warm-up), each run including the GPU finishing.
func (w *WebGPU) MeasureCeilings(reps int) (Ceilings, error) {
	reps = max(reps, 1)
	var c Ceilings
	best := func(f func()) (time.Duration, error) {
		f()
		if err := w.Flush(); err != nil {
			return 0, err
		}
		var b time.Duration
		for i := 0; i < reps; i++ {
			t0 := time.Now()
			f()
			if err := w.Flush(); err != nil {
				return 0, err
			}
			if el := time.Since(t0); i == 0 || el < b {
				b = el
			}
		}
		return b, nil
	}
	const M, K, N = 256, 768, 3072
	x, err1 := w.Alloc(F32, M, K)
	wt, err2 := w.Alloc(F32, N, K)
	d, err3 := w.Alloc(F32, M, N)
	if err := firstErr(err1, err2, err3); err != nil {
		return c, err
	}
	defer w.Free(x)
	defer w.Free(wt)
	defer w.Free(d)
	if err := firstErr(w.Write(x, make([]float32, M*K)), w.Write(wt, make([]float32, N*K))); err != nil {
		return c, err
	}
	el, err := best(func() { w.MatMul(d, x, wt, nil) })
	if err != nil {
		return c, fmt.Errorf("gpu: matmul ceiling: %w", err)
	}
	c.MatMulGFLOPs = 2 * M * K * N / el.Seconds() / 1e9
	const n = 64 << 20 / 4
	src, err1 := w.Alloc(F32, n)
	dst, err2 := w.Alloc(F32, n)
	if err := firstErr(err1, err2); err != nil {
		return c, err
	}
	defer w.Free(src)
	defer w.Free(dst)
	if err := w.Write(src, make([]float32, n)); err != nil {
		return c, err
	}
	el, err = best(func() { w.Copy(dst, src) })
	if err != nil {
		return c, fmt.Errorf("gpu: copy ceiling: %w", err)
	}
	c.CopyGBs = 2 * 4 * n / el.Seconds() / 1e9
	return c, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
