package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// GenerateOptions configures Generate.
type GenerateOptions struct {
	MaxTokens int              // new tokens per sequence at most (> 0)
	Sample    gpu.SampleParams // Temperature <= 0: greedy
	Seed      uint64           // sequence i draws from its own RNG, seeded Seed+i ...
	Seeds     []uint64         // ... or Seeds[i] when given (one per prompt)
	Stop      []string         // generation of a sequence ends before the first of these
	StopAtEOT bool             // end a sequence at <|endoftext|> (not included in the text)
	// OnText, if set, streams each sequence's text as it is produced. Text
	// that might still turn out to begin a stop string, or the first bytes
	// of a character the next token completes, is held back until it
	// cannot (StopText), so the streamed text always equals the final Text.
	OnText func(seq int, text []byte)
	// Adapter, if set, adapts every step's forward (package adapt's
	// plans); its sequences are the prompts, in order.
	Adapter Adapter
	// Cancel, if set, is called once before each step (the prefill and
	// every decode step) while a sequence is unfinished. When it returns
	// true, generation stops there: every unfinished sequence ends with
	// Finish "cancelled", keeping the tokens (and the text, released in
	// full to OnText) produced so far, and Generate returns no error. A
	// Cancel that first returns true on its (n+1)th call thus leaves n
	// tokens per unfinished sequence, the prefix of an uncancelled run.
	Cancel func() bool
}

// Generation is one sequence's result.
type Generation struct {
	Tokens []int32 // every generated token id, including those that formed a stop string
	Text   []byte  // their decoded bytes, cut before a stop string
	Finish string  // "stop" (a stop string or <|endoftext|>), "length" (MaxTokens), "context" (the context is full) or "cancelled" (GenerateOptions.Cancel)
}

// Generate continues each prompt (token ids, none empty) as one batch: one
// batched prefill of the ragged prompts, then one decode step per new
// token for every unfinished sequence, sampling on the backend. Each
// sequence's RNG depends only on its own seed, so the result of a sequence
// does not depend on what else is in the batch.
//
// (Over 80 lines: prefill, the decode loop and stop-string release share the
// cache, the per-sequence RNGs and the text streams.)
func (m *Model) Generate(tok *tokenizer.Tokenizer, prompts [][]int32, opt GenerateOptions) ([]Generation, error) {
	if len(prompts) == 0 {
		return nil, fmt.Errorf("model: no prompts")
	}
	if opt.MaxTokens <= 0 {
		return nil, fmt.Errorf("model: max tokens must be positive, got %d", opt.MaxTokens)
	}
	if t, p := float64(opt.Sample.Temperature), float64(opt.Sample.TopP); math.IsNaN(t) || math.IsInf(t, 0) || math.IsNaN(p) {
		return nil, fmt.Errorf("model: sampling temperature %g and top-p %g must be numbers (temperature finite)", t, p)
	}
	longest := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("model: prompt %d is empty", i)
		}
		if len(p) > m.Cfg.NCtx {
			return nil, fmt.Errorf("model: prompt %d has %d tokens, over the context of %d (truncate it)", i, len(p), m.Cfg.NCtx)
		}
		longest = max(longest, len(p))
	}
	B := len(prompts)
	tmax := min(m.Cfg.NCtx, longest+min(opt.MaxTokens, m.Cfg.NCtx)) // no overflow near MaxInt
	cache, err := m.NewCache(B, tmax)
	if err != nil {
		return nil, err
	}
	defer m.FreeCache(cache)
	be := m.B
	uni := gpu.Must(be.Alloc(gpu.F32, B))
	ids := gpu.Must(be.Alloc(gpu.I32, B))
	defer be.Free(uni)
	defer be.Free(ids)
	if opt.Seeds != nil && len(opt.Seeds) != B {
		return nil, fmt.Errorf("model: %d seeds for %d prompts", len(opt.Seeds), B)
	}
	rngs := make([]*rand.Rand, B)
	for i := range rngs {
		s := opt.Seed + uint64(i)
		if opt.Seeds != nil {
			s = opt.Seeds[i]
		}
		rngs[i] = rand.New(rand.NewPCG(s, 0x5eed))
	}
	out := make([]Generation, B)
	streams := make([]*StopText, B)
	for i := range streams {
		streams[i] = NewStopText(opt.Stop)
	}
	// release streams what sequence i's text can release now.
	release := func(i int, final bool) {
		if from, to := streams[i].Release(final); to > from && opt.OnText != nil {
			opt.OnText(i, streams[i].Text()[from:to:to])
		}
	}
	done := make([]bool, B)
	step := prompts
	u := make([]float32, B)
	for {
		if opt.Cancel != nil && opt.Cancel() {
			for i := range out {
				if !done[i] {
					out[i].Finish = "cancelled"
					release(i, true)
				}
			}
			break
		}
		// The sampler's uniforms go up before the forward is recorded, so
		// that the write does not wait for it (one round trip a step).
		for i := range u {
			u[i] = float32(rngs[i].Float64()) // every RNG advances each step, active or not
		}
		if err := be.Write(uni, u); err != nil {
			return nil, err
		}
		logits, err := m.ForwardAdapted(cache, step, true, opt.Adapter)
		if err != nil {
			return nil, err
		}
		be.Sample(ids, logits, uni, opt.Sample)
		next, err := be.ReadI32(ids)
		be.Free(logits)
		if err != nil {
			return nil, err
		}
		step = make([][]int32, B)
		active := 0
		for i, id := range next {
			if done[i] {
				continue
			}
			g := &out[i]
			if opt.StopAtEOT && id == tok.EOT() {
				g.Finish = "stop"
				done[i] = true
				release(i, true)
				continue
			}
			g.Tokens = append(g.Tokens, id)
			if streams[i].Add(tok.TokenBytes(id)) {
				g.Finish = "stop"
				done[i] = true
				release(i, true)
				continue
			}
			release(i, false)
			switch {
			case len(g.Tokens) >= opt.MaxTokens:
				g.Finish = "length"
			case cache.Len[i] >= cache.Tmax:
				g.Finish = "context"
			default:
				step[i] = []int32{id}
				active++
				continue
			}
			done[i] = true
			release(i, true)
		}
		if active == 0 {
			break
		}
	}
	for i := range out {
		out[i].Text = streams[i].Text()
	}
	return out, nil
}
