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
	var blocks []decodeBlock
	for l := 0; l < layers; l++ {
		blocks = append(blocks, decodeBlock{up(gpu.F16, 3*c, c), up(gpu.F32, 3*c), up(gpu.F16, c, c), up(gpu.F32, c),
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
		a := decodeActs{x, x2, h, qkv, att, proj, fc, act, kc, vc, st, ql}
		step := func(unfused bool) {
			decodeBlocks(w, blocks, a, nh, unfused)
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

// decodeBlock is one GPT-2 block's weights; decodeActs a decode step's
// activations, caches (one pair per block) and positions.
type decodeBlock struct{ attnW, attnB, projW, projB, fcW, fcB, fc2W, fc2B, g, be gpu.Tensor }

type decodeActs struct {
	x, x2, h, qkv, att, proj, fc, act gpu.Tensor
	kc, vc                            []gpu.Tensor
	st, ql                            gpu.Tensor
}

// decodeBlocks records the blocks of a decode step as model's forward
// does, with the fused ops or (unfused) their parts.
func decodeBlocks(w *gpu.WebGPU, blocks []decodeBlock, a decodeActs, nh int, unfused bool) {
	w.Unfused = unfused
	w.LayerNorm(a.h, a.x, blocks[0].g, blocks[0].be, 1e-5)
	for l, L := range blocks {
		if unfused {
			w.MatMul(a.qkv, a.h, L.attnW, L.attnB)
			w.KVStore(a.kc[l], a.vc[l], a.qkv, a.st, a.ql)
		} else {
			w.MatMulKVStore(a.qkv, a.h, L.attnW, L.attnB, a.kc[l], a.vc[l], a.st, a.ql)
		}
		w.Attention(a.att, a.qkv, a.kc[l], a.vc[l], a.st, a.ql, nh)
		w.MatMul(a.proj, a.att, L.projW, L.projB)
		w.AddLayerNorm(a.x2, a.h, a.x, a.proj, L.g, L.be, 1e-5)
		if unfused {
			w.MatMul(a.fc, a.h, L.fcW, L.fcB)
			w.GELU(a.act, a.fc)
		} else {
			w.MatMulGELU(a.act, a.h, L.fcW, L.fcB)
		}
		w.MatMul(a.proj, a.act, L.fc2W, L.fc2B)
		w.AddLayerNorm(a.x, a.h, a.x2, a.proj, L.g, L.be, 1e-5)
	}
}
