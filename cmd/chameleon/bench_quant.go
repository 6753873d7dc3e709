package main

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// qualityBench is one weight dtype's perplexity on the f16 model's own
// greedy continuations (`chameleon bench --quality`).
type qualityBench struct {
	DType      string  `json:"dtype"`
	Perplexity float64 `json:"perplexity"`
	Tokens     int     `json:"tokens"`
	// Relative to the f16 weights' perplexity on the same tokens.
	VsF16 float64 `json:"relative_to_f16"`
}

// benchDType maps a --dtype entry of chameleon bench to a device dtype.
func benchDType(s string) (gpu.DType, error) {
	switch s = strings.TrimSpace(s); s {
	case "f32":
		return gpu.F32, nil
	case "f16":
		return gpu.F16, nil
	}
	f, err := quant.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("--dtype %q: want f32, f16, q8_0, q4_0 or q4_k", s)
	}
	return gpu.QuantDType(f), nil
}

// runQuality is --quality: perplexity under every --dtype of the f16
// model's own greedy continuations of as many random prompts as the first
// --batches.
func (b *bench) runQuality() error {
	b.log("quantization quality on %s: %s (%d parameters), %d sequences of %d greedy tokens\n", b.d, b.name, b.cfg.Params(), b.bs[0], b.o.decode)
	q, err := benchQuality(b.w, b.cfg, model.Dequantize(b.host), b.dts, b.bs[0], b.o.decode, b.log)
	b.report.Quality = q
	return err
}

// benchQuality generates greedy continuations of random prompts with the
// f16 weights, then scores those continuations under every dtype: how much
// perplexity each quantization costs on text the model itself finds likely
// (a random model has no other text it is good at).
func benchQuality(b gpu.Backend, cfg model.Config, host []model.HostTensor, dtypes []gpu.DType, nSeq, steps int, log func(string, ...any)) ([]qualityBench, error) {
	tok, err := tokenizer.NewGPT2()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const promptLen = 8
	if promptLen+steps > cfg.NCtx {
		return nil, fmt.Errorf("--decode %d: prompt and continuation exceed the context %d", steps, cfg.NCtx)
	}
	prompts := make([][]int32, nSeq)
	for i := range prompts {
		for j := 0; j < promptLen; j++ {
			prompts[i] = append(prompts[i], int32(rng.IntN(min(cfg.VocabSize, tok.VocabSize()))))
		}
	}
	up := func(dt gpu.DType) (*model.Model, error) {
		w, err := model.Upload(b, cfg, host, dt)
		if err != nil {
			return nil, err
		}
		return &model.Model{Cfg: cfg, W: w, B: b}, nil
	}
	ref, err := up(gpu.F16)
	if err != nil {
		return nil, err
	}
	gens, err := ref.Generate(tok, prompts, model.GenerateOptions{MaxTokens: steps})
	ref.W.Free(b)
	if err != nil {
		return nil, err
	}
	seqs, from := make([][]int32, nSeq), make([]int, nSeq)
	for i, g := range gens {
		seqs[i] = append(append([]int32{}, prompts[i]...), g.Tokens...)
		from[i] = promptLen
	}
	var out []qualityBench
	base := 0.0
	for i, dt := range append([]gpu.DType{gpu.F16}, dtypes...) {
		if i > 0 && dt == gpu.F16 { // the reference, scored first
			continue
		}
		m, err := up(dt)
		if err != nil {
			return nil, err
		}
		sc, err := m.Score(seqs, from, nil)
		m.W.Free(b)
		if err != nil {
			return nil, err
		}
		var tot model.SequenceScore
		for _, s := range sc {
			tot.NLL += s.NLL
			tot.Tokens += s.Tokens
		}
		q := qualityBench{DType: dt.String(), Perplexity: tot.Perplexity(), Tokens: tot.Tokens}
		if base == 0 {
			base = q.Perplexity
		}
		q.VsF16 = q.Perplexity/base - 1
		out = append(out, q)
		log("%-5s perplexity %10.4f on %d tokens of the f16 model's greedy continuations (%+.3f%% vs f16)\n", q.DType, q.Perplexity, q.Tokens, 100*q.VsF16)
	}
	return out, nil
}
