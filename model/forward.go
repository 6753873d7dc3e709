package model

import (
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Model is a GPT-2 whose weights live on a Backend. The forward is written
// once against gpu.Backend; the WebGPU and reference backends both run it.
type Model struct {
	Cfg Config
	W   *Weights
	B   gpu.Backend
}

// Cache is the key/value cache of B sequences of up to Tmax tokens: per
// layer K and V of shape (B, Tmax, C), and each sequence's length so far.
type Cache struct {
	B, Tmax int
	K, V    []gpu.Tensor
	Len     []int
}

// NewCache allocates a cache for nSeq sequences of up to tmax tokens.
func (m *Model) NewCache(nSeq, tmax int) (*Cache, error) {
	if nSeq <= 0 || tmax <= 0 || tmax > m.Cfg.NCtx {
		return nil, fmt.Errorf("model: cache of %d sequences x %d tokens: need at least one of each and at most the context of %d", nSeq, tmax, m.Cfg.NCtx)
	}
	c := &Cache{B: nSeq, Tmax: tmax, Len: make([]int, nSeq)}
	for l := 0; l < m.Cfg.NLayer; l++ {
		k, err := m.B.Alloc(gpu.F32, nSeq, tmax, m.Cfg.NEmbd)
		if err != nil {
			return nil, fmt.Errorf("model: KV cache: %w", err)
		}
		v, err := m.B.Alloc(gpu.F32, nSeq, tmax, m.Cfg.NEmbd)
		if err != nil {
			return nil, fmt.Errorf("model: KV cache: %w", err)
		}
		c.K, c.V = append(c.K, k), append(c.V, v)
	}
	return c, nil
}

// FinalNorm writes the final norm of residual rows x into dst (same
// shape): the hidden states the head reads (GPT-2's ln_f). A pass that
// reads the residual stream (ResidualPass) and wants those states calls
// this rather than a norm of its own, so that it holds for any family.
func (m *Model) FinalNorm(dst, x gpu.Tensor) {
	m.B.LayerNorm(dst, x, m.W.LnFG, m.W.LnFB, m.Cfg.LNEps)
}

// Free releases the cache's tensors.
func (m *Model) FreeCache(c *Cache) {
	for l := range c.K {
		m.B.Free(c.K[l])
		m.B.Free(c.V[l])
	}
	c.K, c.V = nil, nil
}

// Forward appends tokens[b] to sequence b of the cache (ragged: sequences
// may add different numbers of tokens, or none) and returns the logits of
// every new position, shape (B, Tq, V) with Tq the longest addition; rows
// past a sequence's own addition are padding and hold no meaning. The
// caller frees the logits. It fails if a sequence would exceed the cache.
// The forward is recorded, not waited for: a device error in it surfaces
// at the next read or Flush (each costs a round trip to the device, and a
// decode step needs only one, for the sampled ids).
func (m *Model) Forward(c *Cache, tokens [][]int32) (gpu.Tensor, error) {
	return m.ForwardAdapted(c, tokens, false, nil)
}

// ForwardLast is Forward returning only the logits of each sequence's last
// new token, shape (B, V); a sequence that added no tokens gets a zero row.
// Generation needs no more, and it skips the vocabulary projection of
// every other position.
func (m *Model) ForwardLast(c *Cache, tokens [][]int32) (gpu.Tensor, error) {
	return m.ForwardAdapted(c, tokens, true, nil)
}

// ForwardAdapted is Forward (lastOnly false) or ForwardLast (true) adapted
// by ad (nil: the base model): its pass updates the block sites and may
// compute the logits.
//
// (Over 80 lines: one forward pass, uploads first, then the blocks in order
// over buffers and frees they share; split, it would hand a dozen tensors
// between pieces.)
func (m *Model) ForwardAdapted(c *Cache, tokens [][]int32, lastOnly bool, ad Adapter) (gpu.Tensor, error) {
	if len(tokens) != c.B {
		return nil, fmt.Errorf("model: %d token sequences for a cache of %d", len(tokens), c.B)
	}
	cfg := m.Cfg
	B, C, V := c.B, cfg.NEmbd, cfg.VocabSize
	tq := 0
	for b, ts := range tokens {
		if c.Len[b]+len(ts) > c.Tmax {
			return nil, fmt.Errorf("model: sequence %d: %d cached + %d new tokens exceeds the cache's %d positions", b, c.Len[b], len(ts), c.Tmax)
		}
		for _, t := range ts {
			if t < 0 || int(t) >= V {
				return nil, fmt.Errorf("model: sequence %d: token id %d outside the vocabulary of %d", b, t, V)
			}
		}
		tq = max(tq, len(ts))
	}
	if tq == 0 {
		return nil, fmt.Errorf("model: no tokens to run")
	}
	M := B * tq // rows of every activation
	tok := make([]int32, M)
	pos := make([]int32, M)
	start := make([]int32, B)
	qlen := make([]int32, B)
	for b, ts := range tokens {
		start[b], qlen[b] = int32(c.Len[b]), int32(len(ts))
		for i := 0; i < tq; i++ {
			if i < len(ts) {
				tok[b*tq+i] = ts[i]
				pos[b*tq+i] = int32(c.Len[b] + i)
			}
		}
	}
	be := m.B
	var live []gpu.Tensor
	alloc := func(dt gpu.DType, shape ...int) gpu.Tensor {
		t := gpu.Must(be.Alloc(dt, shape...))
		live = append(live, t)
		return t
	}
	defer func() {
		for _, t := range live {
			be.Free(t)
		}
	}()
	upload := func(v []int32) (gpu.Tensor, error) {
		t := alloc(gpu.I32, len(v))
		return t, be.Write(t, v)
	}
	tokT, err := upload(tok)
	if err != nil {
		return nil, err
	}
	posT, err := upload(pos)
	if err != nil {
		return nil, err
	}
	startT, err := upload(start)
	if err != nil {
		return nil, err
	}
	qlenT, err := upload(qlen)
	if err != nil {
		return nil, err
	}
	// Every upload comes before the first kernel: a write into a buffer
	// waits for the kernels recorded so far (gpu's writeBytes), and a wait
	// in the middle of a decode step costs a round trip to the device.
	var lastT gpu.Tensor
	if lastOnly {
		last := make([]int32, B)
		for b, ts := range tokens {
			last[b] = int32(b*tq + len(ts) - 1)
			if len(ts) == 0 {
				last[b] = -1 // a zero row
			}
		}
		if lastT, err = upload(last); err != nil {
			return nil, err
		}
	}
	var pass Pass
	if ad != nil {
		rows := make([]int32, 0, M)
		for b, ts := range tokens {
			for i := 0; i < tq; i++ {
				rows = append(rows, int32(b))
				if i >= len(ts) {
					rows[len(rows)-1] = -1
				}
			}
		}
		head := rows
		if lastOnly {
			head = make([]int32, B)
			for b, ts := range tokens {
				head[b] = int32(b)
				if len(ts) == 0 {
					head[b] = -1
				}
			}
		}
		if o, ok := ad.(TokenObserver); ok {
			if err := o.Observe(tokens); err != nil {
				return nil, err
			}
		}
		if pass, err = ad.Begin(rows, head); err != nil {
			return nil, err
		}
		defer pass.End()
	}
	// linear runs one block site: y = x·W + b, then the adapter's update
	// (or both in the pass's own MatMul, where it has one and takes s).
	var perr error
	mp, _ := pass.(MatMulPass)
	linear := func(l int, site string, y, x, w, bias gpu.Tensor) {
		s := Site{Layer: l, Name: site}
		if mp != nil && perr == nil {
			done, err := mp.MatMul(s, y, x, w, bias)
			if perr = err; done || err != nil {
				return
			}
		}
		be.MatMul(y, x, w, bias)
		if pass != nil && perr == nil {
			perr = pass.Linear(s, y, x)
		}
	}
	a := blockActs{
		x:    alloc(gpu.F32, B, tq, C), // residual stream
		x2:   alloc(gpu.F32, B, tq, C), // residual after attention
		h:    alloc(gpu.F32, B, tq, C), // layernorm output
		qkv:  alloc(gpu.F32, B, tq, 3*C),
		att:  alloc(gpu.F32, B, tq, C),
		proj: alloc(gpu.F32, B, tq, C),
		act:  alloc(gpu.F32, B, tq, 4*C),
		fc:   func() gpu.Tensor { return alloc(gpu.F32, B, tq, 4*C) },
	}
	emb := alloc(gpu.F32, B, tq, C)
	be.Embed(emb, m.W.Wte, m.W.Wpe, tokT, posT)
	r := blockRun{m: m, c: c, pass: pass, linear: linear, start: startT, qlen: qlenT}
	var cur gpu.Tensor
	if len(m.W.Layers) > 0 && be.FusesBlock(M, m.W.Layers[0].AttnW) {
		cur = r.fusedBlocks(emb, a)
	} else {
		cur = r.blocks(emb, a)
	}
	if rp, ok := pass.(ResidualPass); ok && perr == nil {
		perr = rp.Residual(cur)
	}
	// The final layer norm and the vocabulary projection: of every row, or
	// of each sequence's last (ForwardLast), gathered by Rows unless every
	// sequence added exactly one token (then the rows are the last ones
	// already; a pass's head gets them gathered, (B, C), as always).
	final, h := cur, a.h
	shape := []int{B, tq, V}
	if lastOnly {
		shape = []int{B, V}
		if tq > 1 || pass != nil || slices.ContainsFunc(tokens, func(ts []int32) bool { return len(ts) != 1 }) {
			final = alloc(gpu.F32, B, C)
			be.Rows(final, cur, lastT)
			h = alloc(gpu.F32, B, C)
		}
	}
	fusedHead := pass == nil && be.FusesBlock(gpu.Numel(shape[:len(shape)-1]), m.W.Head())
	if !fusedHead {
		m.FinalNorm(h, final)
	}
	logits, err := be.Alloc(gpu.F32, shape...)
	if err != nil {
		return nil, fmt.Errorf("model: logits: %w", err)
	}
	if perr != nil {
		be.Free(logits)
		return nil, perr
	}
	done := false
	if pass != nil {
		if done, err = pass.Logits(logits, h); err != nil {
			be.Free(logits)
			return nil, err
		}
	}
	switch {
	case fusedHead:
		be.LayerNormMatMul(logits, final, m.W.LnFG, m.W.LnFB, m.W.Head(), nil, cfg.LNEps, false)
	case !done:
		be.MatMul(logits, h, m.W.Head(), nil)
	}
	for b, ts := range tokens {
		c.Len[b] += len(ts)
	}
	return logits, nil
}
