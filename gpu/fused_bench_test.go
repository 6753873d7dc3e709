package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
)

// BenchmarkDecodeBlocks: the 12 blocks of a GPT-2 124M decode step (f16
// weights, context 64), as model's forward records them, with the fused
// ops and texture copies of x (fused) and without (unfused: the two ops,
// and a copy of x before each texture matmul), at batch 1 and 8. One op is
// one step's blocks and a Flush; the dispatches per step are reported.
// Run both halves in one process (the ratio is what holds on a shared
// machine): go test ./gpu -run '^$' -bench DecodeBlocks -benchtime 20x -count 3
func BenchmarkDecodeBlocks(b *testing.B) {
	w := gputest.Backend(b)
	defer func() { w.Unfused = false }()
	const c, nh, tmax, layers = 768, 12, 64, 12
	rng := rand.New(rand.NewPCG(5, 6))
	up := func(dt gpu.DType, shape ...int) gpu.Tensor {
		x := gpu.Must(w.Alloc(dt, shape...))
		v := make([]float32, gpu.Numel(shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := w.Write(x, v); err != nil {
			b.Fatal(err)
		}
		return x
	}
	type block struct{ attnW, attnB, projW, projB, fcW, fcB, fc2W, fc2B, g, be gpu.Tensor }
	var blocks []block
	for l := 0; l < layers; l++ {
		blocks = append(blocks, block{up(gpu.F16, 3*c, c), up(gpu.F32, 3*c), up(gpu.F16, c, c), up(gpu.F32, c),
			up(gpu.F16, 4*c, c), up(gpu.F32, 4*c), up(gpu.F16, c, 4*c), up(gpu.F32, c), up(gpu.F32, c), up(gpu.F32, c)})
	}
	for _, nb := range []int{1, 8} {
		x, x2, h := up(gpu.F32, nb, 1, c), up(gpu.F32, nb, 1, c), up(gpu.F32, nb, 1, c)
		qkv, att, proj := up(gpu.F32, nb, 1, 3*c), up(gpu.F32, nb, 1, c), up(gpu.F32, nb, 1, c)
		fc, act := up(gpu.F32, nb, 1, 4*c), up(gpu.F32, nb, 1, 4*c)
		var kc, vc []gpu.Tensor
		for l := 0; l < layers; l++ {
			kc, vc = append(kc, up(gpu.F32, nb, tmax, c)), append(vc, up(gpu.F32, nb, tmax, c))
		}
		starts, ones := make([]int32, nb), make([]int32, nb)
		for i := range starts {
			starts[i], ones[i] = tmax/2, 1
		}
		st, ql := gpu.Must(w.Alloc(gpu.I32, nb)), gpu.Must(w.Alloc(gpu.I32, nb))
		if err := w.Write(st, starts); err != nil {
			b.Fatal(err)
		}
		if err := w.Write(ql, ones); err != nil {
			b.Fatal(err)
		}
		step := func(unfused bool) {
			w.Unfused = unfused
			w.LayerNorm(h, x, blocks[0].g, blocks[0].be, 1e-5)
			for l, L := range blocks {
				if unfused {
					w.MatMul(qkv, h, L.attnW, L.attnB)
					w.KVStore(kc[l], vc[l], qkv, st, ql)
				} else {
					w.MatMulKVStore(qkv, h, L.attnW, L.attnB, kc[l], vc[l], st, ql)
				}
				w.Attention(att, qkv, kc[l], vc[l], st, ql, nh)
				w.MatMul(proj, att, L.projW, L.projB)
				w.AddLayerNorm(x2, h, x, proj, L.g, L.be, 1e-5)
				if unfused {
					w.MatMul(fc, h, L.fcW, L.fcB)
					w.GELU(act, fc)
				} else {
					w.MatMulGELU(act, h, L.fcW, L.fcB)
				}
				w.MatMul(proj, act, L.fc2W, L.fc2B)
				w.AddLayerNorm(x, h, x2, proj, L.g, L.be, 1e-5)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		for _, unfused := range []bool{false, true} {
			name := "fused"
			if unfused {
				name = "unfused"
			}
			b.Run(fmt.Sprintf("%s/B=%d", name, nb), func(b *testing.B) {
				step(unfused) // texture copies of the weights and the caches
				step(unfused)
				c0 := w.Counts()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					step(unfused)
				}
				b.StopTimer()
				b.ReportMetric(float64(w.Counts().Sub(c0).Dispatches)/float64(b.N), "dispatches/step")
			})
		}
	}
}
