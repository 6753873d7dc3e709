package adapt

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// BenchmarkNeuralMix measures the caches' cost per decode step at GPT-2
// small's head (V = 50257, C = 768) for a batch of 8 sequences, each
// with 100 or 1,000 keys (a pool of 80 or 800 prompt positions, 20 or 200
// of its own): each iteration runs, each followed by a Flush so both see
// the same load, the token cache's step (LogSoftmax, CacheMix) and the
// same plus NeuralMix (a slot write included); it reports each one's
// milliseconds and NeuralMix's added time.
func BenchmarkNeuralMix(b *testing.B) {
	for _, keys := range []int{100, 1000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) { benchNeuralMix(b, keys/5, keys-keys/5) })
	}
}

func benchNeuralMix(b *testing.B, own, pool int) {
	const m = 8
	be := gputest.Backend(b)
	ops := New(be)
	r := rand.New(rand.NewPCG(1, 2))
	kn := pool + m*(own+1)
	logits := upload(b, be, gpu.F32, randn(r, m*benchV, 3), m, benchV)
	h := upload(b, be, gpu.F32, randn(r, m*benchC, 1), m, benchC)
	keys := upload(b, be, gpu.F32, UnitRows(randn(r, kn*benchC, 1), benchC), kn, benchC)
	vals := make([]int32, kn)
	for k := range vals {
		vals[k] = int32(r.IntN(benchV))
	}
	valsT := upload(b, be, gpu.I32, vals, kn)
	counts := make([]float32, m*benchV)
	for i := 0; i < len(counts); i += 97 {
		counts[i] = 1
	}
	ownT, poolT := upload(b, be, gpu.F32, counts, m, benchV), upload(b, be, gpu.F32, counts[:benchV], 1, benchV)
	prior := make([]float32, benchV)
	for j := range prior {
		prior[j] = 1.0 / benchV
	}
	priorT := upload(b, be, gpu.F32, prior, benchV)
	orow, prow, tot := make([]int, m), make([]int, m), make([]float64, m)
	ws := make([]CacheWeights, m)
	rows := make([]NeuralRow, m)
	for i := range m {
		orow[i], tot[i], ws[i] = i, float64(benchV/97), CacheWeights{Own: 0.1, Pool: 0.1}
		rows[i] = NeuralRow{OwnOff: pool + i*(own+1), OwnLen: own, PoolLen: pool, Theta: 20, Own: 0.1, Pool: 0.2, Slot: pool + i*(own+1) + own}
	}
	rpT := upload(b, be, gpu.F32, CacheRowParams(orow, prow, ws, tot, tot), m, 6)
	nrp, most := NeuralRowParams(rows)
	nrpT := upload(b, be, gpu.F32, nrp, m, 8)
	lp, dst := gpu.Must(be.Alloc(gpu.F32, m, benchV)), gpu.Must(be.Alloc(gpu.F32, m, benchV))
	step := func(neural bool) time.Duration {
		t0 := time.Now()
		be.LogSoftmax(lp, logits)
		ops.CacheMix(dst, lp, ownT, poolT, priorT, rpT, 4)
		if neural {
			if err := ops.NeuralMix(dst, h, keys, valsT, nrpT, most); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	step(true) // compile both pipelines
	var tok, neu time.Duration
	b.ResetTimer()
	for range b.N {
		tok += step(false)
		neu += step(true)
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(b.N) }
	b.ReportMetric(ms(tok), "token-ms")
	b.ReportMetric(ms(neu), "token+neural-ms")
	b.ReportMetric(100*(ms(neu)-ms(tok))/ms(tok), "neural-added-%")
}
