package cluster

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

func nan() float64 { return math.NaN() }

// Features (the host-side helper) pads ragged sequences itself; WebGPU and
// reference agree, an empty sequence gives a zero row, and bad ids fail.
func TestFeaturesHelper(t *testing.T) {
	rng := newRng(t)
	const v, c = 300, 129
	table := make([]float32, v*c)
	for i := range table {
		table[i] = float32(rng.NormFloat64() * 0.02)
	}
	seqs := [][]int32{{1, 2, 3}, {}, {299}, {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}}
	var out [][]float32
	for _, ops := range bothOps(t) {
		for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
			wte, err := ops.Alloc(dt, v, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := ops.Write(wte, table); err != nil {
				t.Fatal(err)
			}
			x, err := Features(ops, wte, seqs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ops.ReadF32(x)
			if err != nil {
				t.Fatal(err)
			}
			for j := 0; j < c; j++ {
				if got[c+j] != 0 {
					t.Fatalf("%s: empty sequence's feature is not zero", ops.Name())
				}
			}
			out = append(out, got)
			if _, err := Features(ops, wte, [][]int32{{1}, {v}}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
				t.Fatalf("%s: id %d: err = %v", ops.Name(), v, err)
			}
			ops.Free(x)
			ops.Free(wte)
		}
	}
	for i := 0; i < 2; i++ { // f32, f16: WebGPU vs reference
		if err := conformance.AllClose(out[i], out[i+2], 2e-6, 2e-5); err != nil {
			t.Fatalf("dtype %d: %v", i, err)
		}
	}
}
