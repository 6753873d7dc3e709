package conformance

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

func init() {
	register("AttentionTrain", testAttentionTrain)
	register("AttentionBackward", testAttentionBackward)
	register("BackwardChunked", testBackwardChunked)
}

// attnTrainCases: (B, T, C, H) from one token to GPT-2 small at T = 256.
var attnTrainCases = [][4]int{{1, 1, 1, 1}, {3, 3, 3, 3}, {2, 67, 12, 3}, {3, 129, 768, 12}, {2, 256, 128, 2}, {1, 70, 128, 1}}

// trainQlen: ragged lengths in [0, T], one full and (B > 1) one empty sequence.
func (p *Pair) trainQlen(nb, tq int) []int32 {
	ql := p.Ints(nb, 0, tq+1)
	ql[0] = int32(tq)
	if nb > 1 {
		ql[1] = 0
	}
	return ql
}

// attentionTrainCase runs AttentionTrain and, with backward, AttentionBackward
// on the reference's forward outputs, comparing everything.
func (p *Pair) attentionTrainCase(t T, nb, tq, c, h int, backward bool) {
	t.Helper()
	ref, got := trainPair(t, p)
	what := fmt.Sprintf("B=%d T=%d C=%d H=%d", nb, tq, c, h)
	qkv := p.Upload(t, gpu.F32, p.Randn(nb*tq*3*c, 1), nb, tq, 3*c)
	ql := p.Upload(t, gpu.I32, p.trainQlen(nb, tq), nb)
	out := p.Poisoned(t, gpu.F32, nb, tq, c)
	lse := p.Poisoned(t, gpu.F32, nb, h, tq)
	defer p.Free(qkv, ql, out, lse)
	ref.AttentionTrain(out.Ref, lse.Ref, qkv.Ref, ql.Ref, h)
	got.AttentionTrain(out.Got, lse.Got, qkv.Got, ql.Got, h)
	p.Close(t, what+" dst", out, 1e-5, 1e-4)
	p.Close(t, what+" lse", lse, 1e-5, 1e-5)
	if !backward {
		return
	}
	// Both backends get the reference's forward results, so the backward
	// is compared on identical inputs.
	ov, err := p.Ref.ReadF32(out.Ref)
	if err != nil {
		t.Fatalf("%v", err)
	}
	lv, err := p.Ref.ReadF32(lse.Ref)
	if err != nil {
		t.Fatalf("%v", err)
	}
	out2 := p.Upload(t, gpu.F32, ov, nb, tq, c)
	lse2 := p.Upload(t, gpu.F32, lv, nb, h, tq)
	g := p.Upload(t, gpu.F32, p.Randn(nb*tq*c, 1), nb, tq, c)
	d := p.Poisoned(t, gpu.F32, nb, tq, 3*c)
	defer p.Free(out2, lse2, g, d)
	ref.AttentionBackward(d.Ref, g.Ref, qkv.Ref, out2.Ref, lse2.Ref, ql.Ref, h)
	got.AttentionBackward(d.Got, g.Got, qkv.Got, out2.Got, lse2.Got, ql.Got, h)
	p.Close(t, what+" dQKV", d, 1e-4, 1e-3)
}

func testAttentionTrain(t T, p *Pair) {
	for _, cs := range attnTrainCases {
		p.attentionTrainCase(t, cs[0], cs[1], cs[2], cs[3], false)
	}
}

func testAttentionBackward(t T, p *Pair) {
	for _, cs := range attnTrainCases {
		p.attentionTrainCase(t, cs[0], cs[1], cs[2], cs[3], true)
	}
}

// testBackwardChunked runs the ops that split large operands into
// binding-sized chunks with the WebGPU backend's binding limit lowered to
// 64 KiB, so that the chunked paths (matmul rows and weight rows, vocabulary
// rows, embedding table rows, sequences, flat ranges) run at small sizes.
func testBackwardChunked(t T, p *Pair) {
	w, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		t.Fatalf("backend %s is not *gpu.WebGPU: the chunked paths are WebGPU's", p.Got.Name())
	}
	old := w.Limits.MaxStorageBufferBindingSize
	w.Limits.MaxStorageBufferBindingSize = 64 << 10
	defer func() { w.Limits.MaxStorageBufferBindingSize = old }()
	p.matMulBackwardCase(t, 200, 96, 300, true, true) // dOut 234 KiB, w 112 KiB
	p.embedBackwardCase(t, 500, 300, 64, 129, true)   // dWte 125 KiB, dWpe 75 KiB
	// T = 32: every per-sequence slice is a multiple of 256 bytes, the largest
	// minStorageBufferOffsetAlignment devices report (NVIDIA), so chunks align.
	p.attentionTrainCase(t, 5, 32, 96, 2, true) // qkv 180 KiB
	ref, got := trainPair(t, p)
	m, v := 37, 1000 // logits 145 KiB
	x := p.Upload(t, gpu.F32, p.Randn(m*v, 2), m, v)
	tg := p.Upload(t, gpu.I32, p.Ints(m, -1, v), m)
	d := p.Poisoned(t, gpu.F32, m, v)
	ref.CrossEntropyBackward(d.Ref, x.Ref, tg.Ref, 0.1)
	got.CrossEntropyBackward(d.Got, x.Got, tg.Got, 0.1)
	p.Close(t, "CrossEntropyBackward 37x1000", d, 1e-6, 1e-4)
	lx := p.Upload(t, gpu.F32, p.Randn(m*v, 1), m, v)
	lg := p.Upload(t, gpu.F32, p.Randn(v, 1), v)
	ldx := p.Poisoned(t, gpu.F32, m, v)
	ldg, ldb := p.Upload(t, gpu.F32, p.Randn(v, 1), v), p.Upload(t, gpu.F32, p.Randn(v, 1), v)
	ref.LayerNormBackward(ldx.Ref, ldg.Ref, ldb.Ref, x.Ref, lx.Ref, lg.Ref, 1e-5)
	got.LayerNormBackward(ldx.Got, ldg.Got, ldb.Got, x.Got, lx.Got, lg.Got, 1e-5)
	p.Close(t, "LayerNormBackward 37x1000 dx", ldx, 1e-4, 1e-3)
	p.Close(t, "LayerNormBackward 37x1000 dGamma", ldg, 1e-4, 1e-4)
	p.Close(t, "LayerNormBackward 37x1000 dBeta", ldb, 1e-4, 1e-4)
	n := 40000 // 156 KiB
	prm, mm := p.Upload(t, gpu.F32, p.Randn(n, 1), n), p.Upload(t, gpu.F32, p.Randn(n, 0.1), n)
	vv, gg := p.Upload(t, gpu.F32, p.Uniform(n, 0, 0.01), n), p.Upload(t, gpu.F32, p.Randn(n, 1), n)
	ns := p.Poisoned(t, gpu.F32, 1)
	ref.GradNormSq(ns.Ref, gg.Ref, x.Ref)
	got.GradNormSq(ns.Got, gg.Got, x.Got)
	p.Close(t, "GradNormSq", ns, 0, 1e-5)
	hp := gpu.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 3, ClipNorm: 1}
	ref.AdamW(prm.Ref, mm.Ref, vv.Ref, gg.Ref, ns.Ref, hp)
	got.AdamW(prm.Got, mm.Got, vv.Got, gg.Got, ns.Got, hp)
	p.Close(t, "AdamW param", prm, 1e-6, 1e-5)
	p.Close(t, "AdamW m", mm, 1e-7, 1e-5)
	p.Close(t, "AdamW v", vv, 1e-9, 1e-5)
	p.Free(x, tg, d, lx, lg, ldx, ldg, ldb, prm, mm, vv, gg, ns)
}
