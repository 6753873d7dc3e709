package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// quantBenchShapes are (M, K, N): GPT-2 small's MLP up-projection for one
// decode token, a decode batch of 8 and of 16.
var quantBenchShapes = [][3]int{{1, 768, 3072}, {8, 768, 3072}, {16, 768, 3072}}

// BenchmarkMatMulQuant times MatMul with f16 and quantized weights under
// the adapter's default variant (on lavapipe: the texture kernels, for
// quantized weights the texture mat-vecs up to 16 rows), timed as in
// BenchmarkMatMul; GB/s counts the weights' bytes as stored.
func BenchmarkMatMulQuant(b *testing.B) {
	w := gputest.Backend(b)
	r := rand.New(rand.NewPCG(3, 4))
	dts := []gpu.DType{gpu.F16}
	for _, f := range quant.Formats {
		dts = append(dts, gpu.QuantDType(f))
	}
	for _, s := range quantBenchShapes {
		m, k, n := s[0], s[1], s[2]
		for _, dt := range dts {
			x := gpu.Must(w.Alloc(gpu.F32, m, k))
			wt := gpu.Must(w.Alloc(dt, n, k))
			dst := gpu.Must(w.Alloc(gpu.F32, m, n))
			for _, e := range []error{w.Write(x, randSlice(r, m*k, 1)), w.Write(wt, randSlice(r, n*k, 0.02))} {
				if e != nil {
					b.Fatal(e)
				}
			}
			wBytes := float64(n) * float64(k) * 2
			if f, ok := dt.Quant(); ok {
				wBytes = float64(n) * float64(k) / float64(f.BlockSize()) * float64(f.BlockBytes())
			}
			b.Run(fmt.Sprintf("%dx%dx%d/%v", m, k, n, dt), func(b *testing.B) {
				timeMatMul(b, w, dst, x, wt, nil, m, k, n, wBytes)
			})
			w.Free(x)
			w.Free(wt)
			w.Free(dst)
		}
	}
}
