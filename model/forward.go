package model

import (
	"fmt"

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
		if pass, err = ad.Begin(rows, head); err != nil {
			return nil, err
		}
		defer pass.End()
	}
	// linear runs one block site: y = x·W + b, then the adapter's update.
	var perr error
	linear := func(l int, site string, y, x, w, bias gpu.Tensor) {
		be.MatMul(y, x, w, bias)
		if pass != nil && perr == nil {
			perr = pass.Linear(Site{Layer: l, Name: site}, y, x)
		}
	}
	x := alloc(gpu.F32, B, tq, C)  // residual stream
	x2 := alloc(gpu.F32, B, tq, C) // residual after attention
	h := alloc(gpu.F32, B, tq, C)  // layernorm output
	qkv := alloc(gpu.F32, B, tq, 3*C)
	att := alloc(gpu.F32, B, tq, C)
	proj := alloc(gpu.F32, B, tq, C)
	var fc gpu.Tensor // mlp.fc's output before the GELU, where a pass updates it
	act := alloc(gpu.F32, B, tq, 4*C)
	emb := alloc(gpu.F32, B, tq, C)
	be.Embed(emb, m.W.Wte, m.W.Wpe, tokT, posT)
	cur := emb // the first block reads the embedding as its residual input
	nl := len(m.W.Layers)
	if nl > 0 {
		be.LayerNorm(h, cur, m.W.Layers[0].Ln1G, m.W.Layers[0].Ln1B, cfg.LNEps)
	}
	for l, L := range m.W.Layers {
		// h holds this block's first layer norm of cur.
		if pass != nil && pass.Updates(Site{Layer: l, Name: SiteQKV}) {
			// The cache stores the updated keys and values.
			linear(l, SiteQKV, qkv, h, L.AttnW, L.AttnB)
			be.KVStore(c.K[l], c.V[l], qkv, startT, qlenT)
		} else {
			be.MatMulKVStore(qkv, h, L.AttnW, L.AttnB, c.K[l], c.V[l], startT, qlenT)
		}
		be.Attention(att, qkv, c.K[l], c.V[l], startT, qlenT, cfg.NHead)
		linear(l, SiteProj, proj, att, L.ProjW, L.ProjB)
		be.AddLayerNorm(x2, h, cur, proj, L.Ln2G, L.Ln2B, cfg.LNEps)
		if pass != nil && pass.Updates(Site{Layer: l, Name: SiteFC}) {
			// The update lands on fc's output before the GELU.
			if fc == nil {
				fc = alloc(gpu.F32, B, tq, 4*C)
			}
			linear(l, SiteFC, fc, h, L.FcW, L.FcB)
			be.GELU(act, fc)
		} else {
			be.MatMulGELU(act, h, L.FcW, L.FcB)
		}
		linear(l, SiteFC2, proj, act, L.Fc2W, L.Fc2B)
		if l+1 < nl {
			// The residual add and the next block's first layer norm.
			next := m.W.Layers[l+1]
			be.AddLayerNorm(x, h, x2, proj, next.Ln1G, next.Ln1B, cfg.LNEps)
		} else {
			be.Add(x, x2, proj)
		}
		cur = x
	}
	final := cur
	shape := []int{B, tq, V}
	if lastOnly {
		final = alloc(gpu.F32, B, C)
		be.Rows(final, cur, lastT)
		h = alloc(gpu.F32, B, C)
		shape = []int{B, V}
	}
	be.LayerNorm(h, final, m.W.LnFG, m.W.LnFB, cfg.LNEps)
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
	if !done {
		be.MatMul(logits, h, m.W.Wte, nil)
	}
	for b, ts := range tokens {
		c.Len[b] += len(ts)
	}
	return logits, nil
}
