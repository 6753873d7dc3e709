package model

import "github.com/chameleon-llm/chameleon/gpu"

// blockActs are the activations a forward's decoder blocks write, each
// (B, Tq, ·); fc allocates mlp.fc's output before the GELU, needed only
// where a pass updates that site.
type blockActs struct {
	x, x2, h, qkv, att, proj, act gpu.Tensor
	fc                            func() gpu.Tensor
}

// blockRun is what the decoder blocks of one forward share: the model,
// its cache, the adapter's pass (nil: none), linear (one block site: its
// matmul, then the pass's update) and each sequence's start and new
// tokens (B) on the device.
type blockRun struct {
	m           *Model
	c           *Cache
	pass        Pass
	linear      func(l int, site string, y, x, w, bias gpu.Tensor)
	start, qlen gpu.Tensor
}

// updates reports whether the pass updates site name of layer l.
func (r *blockRun) updates(l int, name string) bool {
	return r.pass != nil && r.pass.Updates(Site{Layer: l, Name: name})
}

// blocks runs the decoder blocks on the residual stream emb as separate
// ops and their pairwise fused forms (MatMulKVStore, AddLayerNorm,
// MatMulGELU), returning the stream after the last block (one of a's).
func (r *blockRun) blocks(emb gpu.Tensor, a blockActs) gpu.Tensor {
	m, be, cfg, c := r.m, r.m.B, r.m.Cfg, r.c
	cur, h := emb, a.h
	nl := len(m.W.Layers)
	if nl > 0 {
		be.LayerNorm(h, cur, m.W.Layers[0].Ln1G, m.W.Layers[0].Ln1B, cfg.LNEps)
	}
	var fc gpu.Tensor
	for l, L := range m.W.Layers {
		// h holds this block's first layer norm of cur.
		if r.updates(l, SiteQKV) {
			// The cache stores the updated keys and values.
			r.linear(l, SiteQKV, a.qkv, h, L.AttnW, L.AttnB)
			be.KVStore(c.K[l], c.V[l], a.qkv, r.start, r.qlen)
		} else {
			be.MatMulKVStore(a.qkv, h, L.AttnW, L.AttnB, c.K[l], c.V[l], r.start, r.qlen)
		}
		be.Attention(a.att, a.qkv, c.K[l], c.V[l], r.start, r.qlen, cfg.NHead)
		r.linear(l, SiteProj, a.proj, a.att, L.ProjW, L.ProjB)
		be.AddLayerNorm(a.x2, h, cur, a.proj, L.Ln2G, L.Ln2B, cfg.LNEps)
		if r.updates(l, SiteFC) {
			// The update lands on fc's output before the GELU.
			if fc == nil {
				fc = a.fc()
			}
			r.linear(l, SiteFC, fc, h, L.FcW, L.FcB)
			be.GELU(a.act, fc)
		} else {
			be.MatMulGELU(a.act, h, L.FcW, L.FcB)
		}
		r.linear(l, SiteFC2, a.proj, a.act, L.Fc2W, L.Fc2B)
		if l+1 < nl {
			// The residual add and the next block's first layer norm.
			next := m.W.Layers[l+1]
			be.AddLayerNorm(a.x, h, a.x2, a.proj, next.Ln1G, next.Ln1B, cfg.LNEps)
		} else {
			be.Add(a.x, a.x2, a.proj)
		}
		cur = a.x
	}
	return cur
}

// fusedBlocks runs the decoder blocks on emb in the fused block ops, for
// a backend whose FusesBlock says they are one kernel each (the GPU decode
// family): LayerNormAttention (layer norm, qkv, KV store, attention),
// MatMulAdd (attn.proj and the residual add), LayerNormMatMul (the second
// layer norm, mlp.fc and its GELU) and MatMulAdd (mlp.fc2 and the residual
// add): four dispatches a block. A site the pass updates runs its parts
// instead, so that the update lands where it does in blocks: on the
// matmul's output, before the residual add, the GELU or the KV store.
func (r *blockRun) fusedBlocks(emb gpu.Tensor, a blockActs) gpu.Tensor {
	m, be, cfg, c := r.m, r.m.B, r.m.Cfg, r.c
	cur := emb
	var fc gpu.Tensor
	for l, L := range m.W.Layers {
		if r.updates(l, SiteQKV) {
			be.LayerNorm(a.h, cur, L.Ln1G, L.Ln1B, cfg.LNEps)
			r.linear(l, SiteQKV, a.qkv, a.h, L.AttnW, L.AttnB)
			be.KVStore(c.K[l], c.V[l], a.qkv, r.start, r.qlen)
			be.Attention(a.att, a.qkv, c.K[l], c.V[l], r.start, r.qlen, cfg.NHead)
		} else {
			be.LayerNormAttention(a.att, gpu.NormAttention{X: cur, Gamma: L.Ln1G, Beta: L.Ln1B, Eps: cfg.LNEps,
				W: L.AttnW, Bias: L.AttnB, KCache: c.K[l], VCache: c.V[l], Start: r.start, Qlen: r.qlen, NHead: cfg.NHead})
		}
		r.residual(l, SiteProj, a.x2, a.att, L.ProjW, L.ProjB, cur, a.proj)
		if r.updates(l, SiteFC) {
			if fc == nil {
				fc = a.fc()
			}
			be.LayerNorm(a.h, a.x2, L.Ln2G, L.Ln2B, cfg.LNEps)
			r.linear(l, SiteFC, fc, a.h, L.FcW, L.FcB)
			be.GELU(a.act, fc)
		} else {
			be.LayerNormMatMul(a.act, a.x2, L.Ln2G, L.Ln2B, L.FcW, L.FcB, cfg.LNEps, true)
		}
		r.residual(l, SiteFC2, a.x, a.act, L.Fc2W, L.Fc2B, a.x2, a.proj)
		cur = a.x
	}
	return cur
}

// residual writes dst = res + site(x): MatMulAdd, or where the pass
// updates the site, the site into tmp (its update included) and Add.
func (r *blockRun) residual(l int, site string, dst, x, w, bias, res, tmp gpu.Tensor) {
	if r.updates(l, site) {
		r.linear(l, site, tmp, x, w, bias)
		r.m.B.Add(dst, res, tmp)
		return
	}
	r.m.B.MatMulAdd(dst, x, w, bias, res)
}
