package model

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
)

// BenchResult is one batch size's prefill and decode speed.
type BenchResult struct {
	Batch          int     `json:"batch"`
	PromptTokens   int     `json:"prompt_tokens"`   // per sequence
	DecodeSteps    int     `json:"decode_steps"`    // tokens generated per sequence
	PrefillSeconds float64 `json:"prefill_seconds"` // batched prefill + first sample
	PrefillTokS    float64 `json:"prefill_tokens_per_s"`
	DecodeSeconds  float64 `json:"decode_seconds"` // all decode steps
	DecodeTokS     float64 `json:"decode_tokens_per_s"`
	// Analytic work per decode step: FLOPs of every matmul and the bytes
	// of weights they read.
	DecodeGFLOPs      float64 `json:"decode_gflop_per_step"`
	DecodeWeightBytes float64 `json:"decode_weight_bytes_per_step"`
	// Recorded work (backends that count it, gpu.Counter; zero otherwise):
	// the timed prefill's and the last decode step's dispatches, compute
	// passes and submits (the vocabulary projection, argmax and id
	// read-back included; the last step is the steady state: the first
	// after a prefill also makes one-time copies, e.g. of the KV cache into
	// textures on CPU adapters), and dispatches per token (the prefill's
	// per prompt token; a decode step's per sequence, at batch 1 the same).
	Prefill                   gpu.Counts `json:"prefill_work"`
	DecodeStep                gpu.Counts `json:"decode_step_work"`
	PrefillDispatchesPerToken float64    `json:"prefill_dispatches_per_token"`
	DecodeDispatchesPerToken  float64    `json:"decode_dispatches_per_token"`
}

// MatMulWork is the FLOPs and weight bytes of the matmuls of one forward
// over tokens new tokens whose logits are needed at rows positions.
func (c Config) MatMulWork(tokens, rows int, weightBytes int) (flops, bytes float64) {
	C, V := float64(c.NEmbd), float64(c.VocabSize)
	_, matrices := gpt2Table.count(c.sizes(), func(r Role) bool { return r == RoleMatrix })
	perLayer := float64(matrices) // a block's MatMul weights (RoleMatrix): c_attn, c_proj, c_fc, mlp.c_proj
	flops = 2*float64(tokens)*perLayer*float64(c.NLayer) + 2*float64(rows)*V*C
	bytes = float64(weightBytes) * (perLayer*float64(c.NLayer) + V*C)
	return flops, bytes
}

// Bench measures batched prefill of prompt random tokens per sequence
// followed by decode steps (greedy, sampled on the backend) for batch
// sequences. Times include the backend finishing and reading back the
// sampled ids, as generation does. An untimed warm-up (the same prefill
// and two decode steps on a cache of its own) runs first: it compiles the
// kernels and lets a backend make its one-time copies of the weights
// (WebGPU's texture matmuls on CPU adapters), which a server pays once at
// load, not per request. ctx carries Go profiler labels for the decode
// samples (see chameleon's --cpuprofile).
func (m *Model) Bench(ctx context.Context, batch, prompt, decode int, seed uint64, weightBytes int) (BenchResult, error) {
	r := BenchResult{Batch: batch, PromptTokens: prompt, DecodeSteps: decode}
	if prompt <= 0 || decode <= 0 || prompt+decode > m.Cfg.NCtx {
		return r, fmt.Errorf("model: bench needs prompt > 0, decode > 0 and prompt+decode <= context %d", m.Cfg.NCtx)
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	toks := make([][]int32, batch)
	for i := range toks {
		for j := 0; j < prompt; j++ {
			toks[i] = append(toks[i], int32(rng.IntN(m.Cfg.VocabSize)))
		}
	}
	ids := gpu.Must(m.B.Alloc(gpu.I32, batch))
	defer m.B.Free(ids)
	var cache *Cache
	step := func(in [][]int32) ([]int32, error) {
		lg, err := m.ForwardLast(cache, in)
		if err != nil {
			return nil, err
		}
		m.B.Argmax(ids, lg)
		out, err := m.B.ReadI32(ids)
		m.B.Free(lg)
		return out, err
	}
	for _, warm := range []bool{true, false} {
		c, err := m.NewCache(batch, prompt+decode)
		if err != nil {
			return r, err
		}
		defer m.FreeCache(c)
		cache = c
		if !warm {
			break
		}
		if err := benchWarm(step, toks, decode); err != nil {
			return r, err
		}
	}
	counts := func() gpu.Counts { return backendCounts(m.B) }
	c0 := counts()
	t0 := time.Now()
	next, err := step(toks)
	if err != nil {
		return r, err
	}
	r.PrefillSeconds = time.Since(t0).Seconds()
	r.Prefill = counts().Sub(c0)
	r.PrefillDispatchesPerToken = float64(r.Prefill.Dispatches) / float64(batch*prompt)
	var last gpu.Counts
	r.PrefillTokS = float64(batch*prompt) / r.PrefillSeconds
	t0 = time.Now()
	// Decode samples of a Go CPU profile carry the label phase=decode (and
	// ctx's labels).
	pprof.Do(ctx, pprof.Labels("phase", "decode"), func(context.Context) {
		for s := 0; s < decode; s++ {
			in := make([][]int32, batch)
			for i := range in {
				in[i] = []int32{next[i]}
			}
			c0 := counts()
			if next, err = step(in); err != nil {
				return
			}
			last = counts().Sub(c0)
		}
	})
	if err != nil {
		return r, err
	}
	r.DecodeSeconds = time.Since(t0).Seconds()
	r.DecodeTokS = float64(batch*decode) / r.DecodeSeconds
	r.DecodeStep = last
	r.DecodeDispatchesPerToken = float64(last.Dispatches) / float64(batch)
	f, b := m.Cfg.MatMulWork(batch, batch, weightBytes)
	r.DecodeGFLOPs, r.DecodeWeightBytes = f/1e9, b
	return r, nil
}

// benchWarm is Bench's untimed warm-up on a cache of its own: the prefill
// of toks, then two decode steps (where the cache holds two): the first
// after a prefill may take another path than the rest (WebGPU on CPU
// adapters makes the KV cache's texture copies there, and fuses the KV
// store from the second on), whose kernels compile here.
func benchWarm(step func([][]int32) ([]int32, error), toks [][]int32, decode int) error {
	next, err := step(toks)
	if err != nil {
		return err
	}
	for s := 0; s < min(2, decode); s++ {
		in := make([][]int32, len(toks))
		for i := range in {
			in[i] = []int32{next[i]}
		}
		if next, err = step(in); err != nil {
			return err
		}
	}
	return nil
}

// backendCounts is b's recorded work if it counts it (gpu.Counter), else
// zero.
func backendCounts(b gpu.Backend) gpu.Counts {
	if c, ok := b.(gpu.Counter); ok {
		return c.Counts()
	}
	return gpu.Counts{}
}
