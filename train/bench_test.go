package train

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/model"
)

// BenchmarkTrainStep times whole training steps (forward, backward,
// gradient norm, AdamW) on the WebGPU backend and reports trained tokens/s
// and GFLOP/s by FLOPsPerStep's count. "gpt2vocab" is the model of
// BENCHMARKS.md's Training run (C 64, L 2, GPT-2's vocabulary, whose
// projection is ~97% of the FLOPs); "smallvocab" the same with V = 512.
func BenchmarkTrainStep(b *testing.B) {
	w := gputest.Backend(b)
	for _, v := range []int{512, 50257} {
		name := "smallvocab"
		if v == 50257 {
			name = "gpt2vocab"
		}
		b.Run(fmt.Sprintf("%s/C64L2T64B8", name), func(b *testing.B) {
			cfg := model.Config{VocabSize: v, NCtx: 64, NEmbd: 64, NHead: 4, NLayer: 2, LNEps: 1e-5}
			m, err := New(w, cfg, model.RandomInit(cfg, 1))
			if err != nil {
				b.Fatal(err)
			}
			defer m.Free()
			opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.1, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer opt.Free()
			tr := &Trainer{M: m, Opt: opt, Sched: Schedule{LR: 1e-4, Steps: 1 << 30}}
			lens := []int{64, 64, 64, 64, 64, 64, 64, 64}
			batch := randomBatch(rand.New(rand.NewPCG(1, 1)), lens, v)
			if _, err := tr.Step(batch); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := tr.Step(batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*64*8)/sec, "tokens/s")
			b.ReportMetric(float64(b.N)*FLOPsPerStep(cfg, 8, 64)/sec/1e9, "GFLOP/s")
		})
	}
}
