package model

import (
	"fmt"
	"testing"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// BenchmarkDecodeFused: GPT-2 124M decode steps (random f16 weights,
// prompt 32, forward + argmax + read-back, as chameleon bench times them)
// with the fused ops and texture copies of x and without them
// (WebGPU.Unfused), alternating step by step in one process on two caches,
// so that a shared machine's drift falls on both alike. Reported per
// batch: each variant's median ms a step and fused/unfused, the ratio of
// the medians (below 1: the fusions pay). One op is one pair of steps.
// go test ./model -run '^$' -bench DecodeFused -benchtime 40x
func BenchmarkDecodeFused(b *testing.B) {
	w := gputest.Backend(b)
	defer func() { w.Unfused = false }()
	cfg := Configs["gpt2"]
	wts, err := Upload(w, cfg, RandomInit(cfg, 1), gpu.F16)
	if err != nil {
		b.Fatal(err)
	}
	m := &Model{Cfg: cfg, W: wts, B: w}
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("B=%d", batch), func(b *testing.B) {
			ids := gpu.Must(w.Alloc(gpu.I32, batch))
			defer w.Free(ids)
			var caches [2]*Cache
			var next [2][]int32
			step := func(v int, in [][]int32) {
				w.Unfused = v == 1
				lg, err := m.ForwardLast(caches[v], in)
				if err != nil {
					b.Fatal(err)
				}
				w.Argmax(ids, lg)
				if next[v], err = w.ReadI32(ids); err != nil {
					b.Fatal(err)
				}
				w.Free(lg)
			}
			prompt := make([][]int32, batch)
			for i := range prompt {
				for j := 0; j < 32; j++ {
					prompt[i] = append(prompt[i], int32((i*31+j*7)%cfg.VocabSize))
				}
			}
			for v := range caches {
				c, err := m.NewCache(batch, 32+b.N+2)
				if err != nil {
					b.Fatal(err)
				}
				defer m.FreeCache(c)
				caches[v] = c
				step(v, prompt)
			}
			times := [2][]float64{}
			for i := -2; i < b.N; i++ { // two untimed steps: copies and compiles
				for v := range caches {
					in := make([][]int32, batch)
					for s := range in {
						in[s] = []int32{next[v][s]}
					}
					t0 := time.Now()
					step(v, in)
					if i >= 0 {
						times[v] = append(times[v], float64(time.Since(t0).Microseconds())/1000)
					}
				}
			}
			f, u := median(times[0]), median(times[1])
			b.ReportMetric(f, "fused_ms/step")
			b.ReportMetric(u, "unfused_ms/step")
			b.ReportMetric(f/u, "fused/unfused")
		})
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
