package conformance

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// GPT2 checks the forward and sampling kernels once each at GPT-2 small's
// sizes (4 sequences of 16 tokens, width 768, 12 heads, 50,257 tokens):
// what `chameleon selfcheck` runs on an adapter in a few seconds. Cases is
// the full suite at awkward sizes.
var GPT2 = []Case{
	{"layernorm (64x768)", func(t T, p *Pair) {
		x, g, b := p.Upload(t, gpu.F32, p.Randn(gB*gT*gC, 1), gB, gT, gC), p.Upload(t, gpu.F32, p.Randn(gC, 1), gC), p.Upload(t, gpu.F32, p.Randn(gC, 1), gC)
		o := p.Poisoned(t, gpu.F32, gB, gT, gC)
		p.Ref.LayerNorm(o.Ref, x.Ref, g.Ref, b.Ref, 1e-5)
		p.Got.LayerNorm(o.Got, x.Got, g.Got, b.Got, 1e-5)
		p.Close(t, "layernorm", o, 1e-4, 1e-4)
		p.Free(x, g, b, o)
	}},
	{"gelu (64x768)", func(t T, p *Pair) {
		x := p.Upload(t, gpu.F32, p.Randn(gB*gT*gC, 1), gB, gT, gC)
		o := p.Poisoned(t, gpu.F32, gB, gT, gC)
		p.Ref.GELU(o.Ref, x.Ref)
		p.Got.GELU(o.Got, x.Got)
		p.Close(t, "gelu", o, 1e-5, 1e-4)
		p.Free(x, o)
	}},
	{"add (64x768)", func(t T, p *Pair) {
		a, b := p.Upload(t, gpu.F32, p.Randn(gB*gT*gC, 1), gB, gT, gC), p.Upload(t, gpu.F32, p.Randn(gB*gT*gC, 1), gB, gT, gC)
		o := p.Poisoned(t, gpu.F32, gB, gT, gC)
		p.Ref.Add(o.Ref, a.Ref, b.Ref)
		p.Got.Add(o.Got, a.Got, b.Got)
		p.Close(t, "add", o, 1e-5, 1e-5)
		p.Free(a, b, o)
	}},
	{"matmul f32 (64x768x2304)", gpt2MatMul(gpu.F32, gB*gT)},
	{"matvec f32 (1x768x2304)", gpt2MatMul(gpu.F32, 1)},
	{"matmul f16 (64x768x2304)", gpt2MatMul(gpu.F16, gB*gT)},
	{"matvec f16 (1x768x2304)", gpt2MatMul(gpu.F16, 1)},
	{"kv store (4 ragged prompts)", func(t T, p *Pair) { gpt2Attention(t, p, false) }},
	{"attention prefill (4x16, 12 heads)", func(t T, p *Pair) { gpt2Attention(t, p, true) }},
	{"embed f16 (64 tokens)", func(t T, p *Pair) {
		m := gB * gT
		wte := p.Upload(t, gpu.F16, p.Randn(gV*gC, 0.02), gV, gC)
		wpe := p.Upload(t, gpu.F16, p.Randn(1024*gC, 0.01), 1024, gC)
		tok, pos := p.Upload(t, gpu.I32, p.Ints(m, 0, gV), m), p.Upload(t, gpu.I32, p.Ints(m, 0, 1024), m)
		o := p.Poisoned(t, gpu.F32, m, gC)
		p.Ref.Embed(o.Ref, wte.Ref, wpe.Ref, tok.Ref, pos.Ref)
		p.Got.Embed(o.Got, wte.Got, wpe.Got, tok.Got, pos.Got)
		p.Close(t, "embed", o, 0, 0)
		p.Free(wte, wpe, tok, pos, o)
	}},
	{"log-softmax (8x50257)", func(t T, p *Pair) {
		x := p.Upload(t, gpu.F32, p.Randn(8*gV, 3), 8, gV)
		o := p.Poisoned(t, gpu.F32, 8, gV)
		p.Ref.LogSoftmax(o.Ref, x.Ref)
		p.Got.LogSoftmax(o.Got, x.Got)
		p.Close(t, "log-softmax", o, 1e-4, 1e-5)
		p.Free(x, o)
	}},
	{"cross-entropy (8x50257)", func(t T, p *Pair) {
		x := p.Upload(t, gpu.F32, p.Randn(8*gV, 3), 8, gV)
		tg := p.Upload(t, gpu.I32, append(p.Ints(7, 0, gV), -1), 8)
		o := p.Poisoned(t, gpu.F32, 8)
		p.Ref.CrossEntropy(o.Ref, x.Ref, tg.Ref)
		p.Got.CrossEntropy(o.Got, x.Got, tg.Got)
		p.Close(t, "cross-entropy", o, 1e-4, 1e-5)
		p.Free(x, tg, o)
	}},
	{"argmax (8x50257)", func(t T, p *Pair) {
		x := p.Upload(t, gpu.F32, p.Randn(8*gV, 3), 8, gV)
		o := p.Poisoned(t, gpu.I32, 8)
		p.Ref.Argmax(o.Ref, x.Ref)
		p.Got.Argmax(o.Got, x.Got)
		p.Equal(t, "argmax", o)
		p.Free(x, o)
	}},
	{"sample T=0.8 top-k 40 top-p 0.95", func(t T, p *Pair) {
		x := p.Upload(t, gpu.F32, p.Randn(8*gV, 3), 8, gV)
		u := p.Upload(t, gpu.F32, p.Uniform(8, 0, 1), 8)
		o := p.Poisoned(t, gpu.I32, 8)
		sp := gpu.SampleParams{Temperature: 0.8, TopK: 40, TopP: 0.95}
		p.Ref.Sample(o.Ref, x.Ref, u.Ref, sp)
		p.Got.Sample(o.Got, x.Got, u.Got, sp)
		p.Equal(t, "sample", o)
		p.Free(x, u, o)
	}},
}

// GPT-2 small's sizes for GPT2: batch, tokens, width, heads, vocabulary.
const gB, gT, gC, gH, gV = 4, 16, 768, 12, 50257

// gpt2MatMul checks the QKV projection of m rows with dt weights.
func gpt2MatMul(dt gpu.DType, m int) func(t T, p *Pair) {
	return func(t T, p *Pair) {
		w := p.Upload(t, dt, p.Randn(3*gC*gC, 0.02), 3*gC, gC)
		b := p.Upload(t, gpu.F32, p.Randn(3*gC, 0.02), 3*gC)
		x := p.Upload(t, gpu.F32, p.Randn(m*gC, 1), m, gC)
		o := p.Poisoned(t, gpu.F32, m, 3*gC)
		p.Ref.MatMul(o.Ref, x.Ref, w.Ref, b.Ref)
		p.Got.MatMul(o.Got, x.Got, w.Got, b.Got)
		p.Close(t, fmt.Sprintf("matmul %v M=%d", dt, m), o, 1e-4, 1e-3)
		p.Free(w, b, x, o)
	}
}

// gpt2Attention stores the keys and values of 4 ragged prompts into
// zeroed caches and checks them, or (attend) the prefill attention over
// them.
func gpt2Attention(t T, p *Pair, attend bool) {
	const tmax = 32
	qkv := p.Upload(t, gpu.F32, p.Randn(gB*gT*3*gC, 1), gB, gT, 3*gC)
	start := p.Upload(t, gpu.I32, []int32{0, 0, 0, 0}, gB)
	qlen := p.Upload(t, gpu.I32, []int32{16, 9, 1, 13}, gB)
	kc := p.Upload(t, gpu.F32, make([]float32, gB*tmax*gC), gB, tmax, gC)
	vc := p.Upload(t, gpu.F32, make([]float32, gB*tmax*gC), gB, tmax, gC)
	defer p.Free(qkv, start, qlen, kc, vc)
	p.Ref.KVStore(kc.Ref, vc.Ref, qkv.Ref, start.Ref, qlen.Ref)
	p.Got.KVStore(kc.Got, vc.Got, qkv.Got, start.Got, qlen.Got)
	if !attend {
		p.Close(t, "k cache", kc, 0, 0)
		p.Close(t, "v cache", vc, 0, 0)
		return
	}
	o := p.Poisoned(t, gpu.F32, gB, gT, gC)
	defer p.Free(o)
	p.Ref.Attention(o.Ref, qkv.Ref, kc.Ref, vc.Ref, start.Ref, qlen.Ref, gH)
	p.Got.Attention(o.Got, qkv.Got, kc.Got, vc.Got, start.Got, qlen.Got, gH)
	p.Close(t, "attention", o, 1e-5, 1e-4)
}
