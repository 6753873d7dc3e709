package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// TestBatchInvariant checks WebGPU.BatchInvariant, on which the server's
// "a request's output does not depend on its neighbours" rests: with it
// set, a row's MatMul alone (M = 1) equals, bit for bit, the same row inside
// a 20-row call, under each adapter default (tile as on GPUs, tex and reg
// as on CPU adapters); and a decode row's attention (Tq = 1) equals the same
// query's row of a prompt chunk (Tq = 200) under both decode variants. Both
// run on whatever adapter the suite has, so the GPU defaults are checked on
// lavapipe too.
//
// (Over 80 lines: the three invariances share one model and cache and are
// checked in turn.)
func TestBatchInvariant(t *testing.T) {
	w := gputest.Backend(t)
	oldMM, oldAtt := w.MatMulVariant, w.AttentionDecodeVariant
	defer func() {
		w.MatMulVariant, w.AttentionDecodeVariant, w.BatchInvariant = oldMM, oldAtt, false
	}()
	r := rand.New(rand.NewPCG(7, 8))
	const m, k, n = 20, 256, 300
	xh := randSlice(r, m*k, 1)
	wh := randSlice(r, n*k, 0.05)
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16, gpu.Q8_0, gpu.Q4_0, gpu.Q4_K} {
		x := gpu.Must(w.Alloc(gpu.F32, m, k))
		wt := gpu.Must(w.Alloc(dt, n, k))
		x1 := gpu.Must(w.Alloc(gpu.F32, 1, k))
		dst := gpu.Must(w.Alloc(gpu.F32, m, n))
		d1 := gpu.Must(w.Alloc(gpu.F32, 1, n))
		for _, e := range []error{w.Write(x, xh), w.Write(wt, wh)} {
			if e != nil {
				t.Fatal(e)
			}
		}
		for _, v := range []string{gpu.MatMulTile, gpu.MatMulTex, gpu.MatMulReg} {
			for _, inv := range []bool{true, false} {
				w.MatMulVariant, w.BatchInvariant = v, inv
				w.MatMul(dst, x, wt, nil)
				all, err := w.ReadF32(dst)
				if err != nil {
					t.Fatal(err)
				}
				differ := 0
				for _, row := range []int{0, 7, 19} {
					if err := w.Write(x1, xh[row*k:(row+1)*k]); err != nil {
						t.Fatal(err)
					}
					w.MatMul(d1, x1, wt, nil)
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
				if inv && differ > 0 {
					t.Errorf("%v weights, %s, BatchInvariant: %d of %d outputs of a row alone differ from the same row in a batch", dt, v, differ, 3*n)
				}
				if !inv {
					t.Logf("%v weights, %s, without BatchInvariant: %d of %d differ", dt, v, differ, 3*n)
				}
			}
		}
		w.Free(x)
		w.Free(wt)
		w.Free(x1)
		w.Free(dst)
		w.Free(d1)
	}

	// Attention: two sequences of 200 cached positions; the prompt-chunk
	// kernel's last row against a decode of that query.
	const b, c, h, tq, tmax = 2, 64, 4, 200, 256
	qkvh := randSlice(r, b*tq*3*c, 1)
	qkv := gpu.Must(w.Alloc(gpu.F32, b, tq, 3*c))
	kc := gpu.Must(w.Alloc(gpu.F32, b, tmax, c))
	vc := gpu.Must(w.Alloc(gpu.F32, b, tmax, c))
	start := gpu.Must(w.Alloc(gpu.I32, b))
	qlen := gpu.Must(w.Alloc(gpu.I32, b))
	last := gpu.Must(w.Alloc(gpu.F32, b, 1, 3*c))
	dstP := gpu.Must(w.Alloc(gpu.F32, b, tq, c))
	dstD := gpu.Must(w.Alloc(gpu.F32, b, 1, c))
	defer func() {
		for _, x := range []gpu.Tensor{qkv, kc, vc, start, qlen, last, dstP, dstD} {
			w.Free(x)
		}
	}()
	lastH := make([]float32, 0, b*3*c)
	for s := 0; s < b; s++ {
		lastH = append(lastH, qkvh[(s*tq+tq-1)*3*c:(s*tq+tq)*3*c]...)
	}
	for _, e := range []error{w.Write(qkv, qkvh), w.Write(start, []int32{0, 0}), w.Write(qlen, []int32{tq, tq}), w.Write(last, lastH)} {
		if e != nil {
			t.Fatal(e)
		}
	}
	w.KVStore(kc, vc, qkv, start, qlen)
	w.Attention(dstP, qkv, kc, vc, start, qlen, h)
	prompt, err := w.ReadF32(dstP)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(start, []int32{tq - 1, tq - 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(qlen, []int32{1, 1}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{gpu.AttentionDecodeWG, gpu.AttentionDecodeLanes} {
		w.AttentionDecodeVariant, w.BatchInvariant = v, true
		w.Attention(dstD, last, kc, vc, start, qlen, h)
		dec, err := w.ReadF32(dstD)
		if err != nil {
			t.Fatal(err)
		}
		differ := 0
		for s := 0; s < b; s++ {
			for j := 0; j < c; j++ {
				if math.Float32bits(dec[s*c+j]) != math.Float32bits(prompt[(s*tq+tq-1)*c+j]) {
					differ++
				}
			}
		}
		if differ > 0 {
			t.Errorf("attention, decode variant %s, BatchInvariant: %d of %d outputs of a decode row differ from the prompt kernel's", v, differ, b*c)
		}
	}
}
