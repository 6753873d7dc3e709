package gpu_test

import (
	"fmt"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// BenchmarkCopy measures the adapter's memory bandwidth with the vec4 copy
// kernel (bytes read + written per second): the ceiling bandwidth-bound
// kernels are reported against. BenchmarkHostCopy is the host's memmove on
// the same sizes, for orientation on CPU adapters.
func BenchmarkCopy(b *testing.B) {
	w := gputest.Backend(b)
	for _, mb := range []int{4, 64} {
		n := mb << 20 / 4
		b.Run(fmt.Sprintf("%dMiB", mb), func(b *testing.B) {
			src := gpu.Must(w.Alloc(gpu.F32, n))
			dst := gpu.Must(w.Alloc(gpu.F32, n))
			defer w.Free(src)
			defer w.Free(dst)
			if err := w.Write(src, make([]float32, n)); err != nil {
				b.Fatal(err)
			}
			w.Copy(dst, src) // compile and warm up
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(2 * 4 * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.Copy(dst, src)
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHostCopy(b *testing.B) {
	for _, mb := range []int{4, 64} {
		n := mb << 20 / 4
		b.Run(fmt.Sprintf("%dMiB", mb), func(b *testing.B) {
			src, dst := make([]float32, n), make([]float32, n)
			b.SetBytes(int64(2 * 4 * n))
			for i := 0; i < b.N; i++ {
				copy(dst, src)
			}
		})
	}
}
