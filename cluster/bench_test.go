package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// BenchmarkClustering: the whole per-batch clustering cost of the method at
// the shape, a batch of 32 sequences of 256 tokens with GPT-2 small's
// embedding table (V = 50257, C = 768), k = 4: features (gather, mean, norm)
// and k-means (k-means++ seeding, Lloyd to convergence), each with its reads
// back to the host. The f32 table is 154 MB, over a 128 MiB binding on
// lavapipe, so it takes the Embed-gather path there; the f16 table (77 MB)
// the direct kernel. Metrics: ms per stage and the embedding bytes the
// features read per second.
func BenchmarkClustering(b *testing.B) {
	const bsz, tlen, v, c, k = 32, 256, 50257, 768, 4
	w := gputest.Backend(b)
	ops := NewGPUOps(w)
	rng := rand.New(rand.NewPCG(1, 2))
	table := make([]float32, v*c)
	for i := range table {
		table[i] = float32(rng.NormFloat64() * 0.02)
	}
	seqs := make([][]int32, bsz)
	for i := range seqs {
		seqs[i] = make([]int32, tlen)
		for j := range seqs[i] {
			seqs[i][j] = int32(rng.IntN(v))
		}
	}
	for _, dt := range []gpu.DType{gpu.F16, gpu.F32} {
		b.Run(fmt.Sprintf("wte=%v/B%d_T%d_C%d_k%d", dt, bsz, tlen, c, k), func(b *testing.B) {
			wte := gpu.Must(w.Alloc(dt, v, c))
			defer w.Free(wte)
			if err := w.Write(wte, table); err != nil {
				b.Fatal(err)
			}
			var tf, tk time.Duration
			iters := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				x, err := Features(ops, wte, seqs)
				if err != nil {
					b.Fatal(err)
				}
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				res, err := KMeans(ops, x, Config{K: k, Seed: uint64(i)})
				if err != nil {
					b.Fatal(err)
				}
				tf += t1.Sub(t0)
				tk += time.Since(t1)
				iters += res.Iterations
				w.Free(x)
			}
			n := float64(b.N)
			b.ReportMetric(tf.Seconds()*1e3/n, "features-ms")
			b.ReportMetric(tk.Seconds()*1e3/n, "kmeans-ms")
			b.ReportMetric(float64(iters)/n, "lloyd-iters")
			b.ReportMetric(float64(bsz*tlen*c*dt.Size())/(tf.Seconds()/n)/1e9, "wte-GB/s")
		})
	}
}
