package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// TestBatchInvariantLowRank checks MatMulLowRank under BatchInvariant, as
// TestBatchInvariant checks MatMul: a row alone (M = 1, its cluster
// uploaded with it) gets, bit for bit, the output of the same row inside a
// 20-row call whose rows mix two clusters and -1, and both calls take the
// same path (the fused kernel, or false for the caller's MatMul and
// separate expand), under each adapter default (tile, tex, reg) and the
// cooperative mat-vec forced, for f32, f16 and quantized weights.
func TestBatchInvariantLowRank(t *testing.T) {
	w := gputest.Backend(t)
	old := w.MatMulVariant
	defer func() { w.MatMulVariant, w.BatchInvariant = old, false }()
	r := rand.New(rand.NewPCG(9, 10))
	const m, k, n, rank, nc = 20, 256, 300, 4, 2
	xh, uh, bh := randSlice(r, m*k, 1), randSlice(r, m*rank, 1), randSlice(r, nc*n*rank, 0.5)
	ids := make([]int32, m)
	for i := range ids {
		ids[i] = int32(i%3) - 1
	}
	alloc := func(dt gpu.DType, data any, shape ...int) gpu.Tensor {
		x := gpu.Must(w.Alloc(dt, shape...))
		if data != nil {
			if err := w.Write(x, data); err != nil {
				t.Fatal(err)
			}
		}
		return x
	}
	x, u, cl, b := alloc(gpu.F32, xh, m, k), alloc(gpu.F32, uh, m, rank), alloc(gpu.I32, ids, m), alloc(gpu.F32, bh, nc, n, rank)
	x1, u1, cl1 := alloc(gpu.F32, nil, 1, k), alloc(gpu.F32, nil, 1, rank), alloc(gpu.I32, nil, 1)
	dst, d1 := alloc(gpu.F32, nil, m, n), alloc(gpu.F32, nil, 1, n)
	defer func() {
		for _, z := range []gpu.Tensor{x, u, cl, b, x1, u1, cl1, dst, d1} {
			w.Free(z)
		}
	}()
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16, gpu.Q8_0, gpu.Q4_K} {
		wt := alloc(dt, randSlice(r, n*k, 0.05), n, k)
		for _, v := range []string{gpu.MatMulTile, gpu.MatMulTex, gpu.MatMulReg, gpu.MatMulCoop} {
			w.MatMulVariant, w.BatchInvariant = v, true
			lr := gpu.LowRankUpdate{U: u, Cluster: cl, B: b, R: rank, K: nc, BStride: n * rank}
			fused := w.MatMulLowRank(dst, x, wt, nil, lr)
			all, err := w.ReadF32(dst)
			if err != nil {
				t.Fatal(err)
			}
			differ := 0
			for _, row := range []int{0, 7, 19} {
				for _, e := range []error{w.Write(x1, xh[row*k:(row+1)*k]), w.Write(u1, uh[row*rank:(row+1)*rank]), w.Write(cl1, ids[row:row+1])} {
					if e != nil {
						t.Fatal(e)
					}
				}
				lr1 := gpu.LowRankUpdate{U: u1, Cluster: cl1, B: b, R: rank, K: nc, BStride: n * rank}
				if f1 := w.MatMulLowRank(d1, x1, wt, nil, lr1); f1 != fused {
					t.Fatalf("%v weights, %s: MatMulLowRank fused %v for the batch, %v for row %d alone", dt, v, fused, f1, row)
				}
				if !fused {
					continue
				}
				one, err := w.ReadF32(d1)
				if err != nil {
					t.Fatal(err)
				}
				for j := range one {
					if math.Float32bits(one[j]) != math.Float32bits(all[row*n+j]) {
						differ++
					}
				}
			}
			if differ > 0 {
				t.Errorf("%v weights, %s, BatchInvariant: %d of %d outputs of a row alone differ from the same row in a batch", dt, v, differ, 3*n)
			}
			t.Logf("%v weights, %s: fused %v", dt, v, fused)
		}
		w.Free(wt)
	}
}
