package gpu

import "fmt"

// batchChunk is a run [start, start+n) of sequences of several tensors
// whose leading dim is B, bound as one range each.
type batchChunk struct {
	start, n int
	b        []binding
}

// batchChunks splits tensors with leading dim nb into runs of whole
// sequences that fit one storage binding each at aligned offsets. Tensors
// up to the binding limit are one chunk.
func (w *WebGPU) batchChunks(op string, nb int, ts ...Tensor) []batchChunk {
	lim := w.Limits.MaxStorageBufferBindingSize
	align := uint64(w.Limits.MinStorageOffsetAlignment)
	fits := true
	for _, x := range ts {
		fits = fits && w.t(x).bytes <= lim
	}
	if fits || nb <= 1 {
		bs := make([]binding, len(ts))
		for i, x := range ts {
			bs[i] = w.bind(x)
		}
		return []batchChunk{{0, nb, bs}}
	}
	per := nb
	for _, x := range ts {
		per = min(per, int(lim/(w.t(x).bytes/uint64(nb))))
	}
	aligned := func(p int) bool {
		for _, x := range ts {
			if (uint64(p)*(w.t(x).bytes/uint64(nb)))%align != 0 {
				return false
			}
		}
		return true
	}
	for per > 0 && !aligned(per) {
		per--
	}
	if per == 0 {
		panic(fmt.Sprintf("gpu: %s: sequences cannot be split into aligned bindings of at most %d bytes", op, lim))
	}
	var out []batchChunk
	for s := 0; s < nb; s += per {
		n := min(per, nb-s)
		bs := make([]binding, len(ts))
		for i, x := range ts {
			sb := w.t(x).bytes / uint64(nb)
			bs[i] = binding{buf: w.t(x).buf, offset: uint64(s) * sb, size: uint64(n) * sb}
		}
		out = append(out, batchChunk{s, n, bs})
	}
	return out
}

// AttentionTrain: causal self-attention of qkv(B,T,3C) from position 0,
// dst(B,T,C) and the row logsumexps lse(B,H,T) (wgsl/attention_train.wgsl,
// one invocation per query).
func (w *WebGPU) AttentionTrain(dst, lse, qkv, qlen Tensor, nHead int) {
	nb, tq, c, d := AttentionTrainDims("AttentionTrain", qkv, qlen, nHead)
	CheckShape("AttentionTrain", "dst", dst, F32, nb, tq, c)
	CheckShape("AttentionTrain", "lse", lse, F32, nb, nHead, tq)
	if nb == 0 || tq == 0 || d == 0 {
		if d == 0 && nb*tq > 0 {
			w.Zero(lse)
		}
		return
	}
	nqb := ceilDiv(tq, attnWG)
	for _, ch := range w.batchChunks("AttentionTrain", nb, qkv, dst) {
		gx, gy := w.grid1(ch.n * nHead * nqb)
		w.dispatch("attention_train", 2, 2, []binding{ch.b[0], w.bind(qlen), ch.b[1], w.bind(lse)},
			Meta{ch.n, ch.start, tq, c, nHead, d, nqb, attnScale(d)}, gx, gy, 1)
	}
}

// AttentionBackward: dQKV(B,T,3C) written from dOut, qkv, out and lse of
// AttentionTrain. Two kernels, neither with atomics: one invocation per
// query computes dq and delta = dO·O (wgsl/attention_backward_q.wgsl, delta
// kept in a (B,H,T) scratch), then one invocation per key computes dk and
// dv over the queries that attend to it (wgsl/attention_backward_kv.wgsl).
func (w *WebGPU) AttentionBackward(dQKV, dOut, qkv, out, lse, qlen Tensor, nHead int) {
	nb, tq, c, d := AttentionTrainDims("AttentionBackward", qkv, qlen, nHead)
	CheckShape("AttentionBackward", "dQKV", dQKV, F32, nb, tq, 3*c)
	CheckShape("AttentionBackward", "dOut", dOut, F32, nb, tq, c)
	CheckShape("AttentionBackward", "out", out, F32, nb, tq, c)
	CheckShape("AttentionBackward", "lse", lse, F32, nb, nHead, tq)
	if nb == 0 || tq == 0 || d == 0 {
		return
	}
	delta := Must(w.Alloc(F32, nb, nHead, tq))
	defer w.Free(delta)
	nqb := ceilDiv(tq, attnWG)
	scale := attnScale(d)
	// lse and delta (B,H,T) are small and bound whole; the (B,T,·)
	// activations go in runs of whole sequences when they exceed a binding.
	for _, ch := range w.batchChunks("AttentionBackward", nb, qkv, dOut, out, dQKV) {
		gx, gy := w.grid1(ch.n * nHead * nqb)
		m := Meta{ch.n, ch.start, tq, c, nHead, d, nqb, scale}
		w.dispatch("attention_backward_q", 5, 2,
			[]binding{ch.b[0], ch.b[1], ch.b[2], w.bind(lse), w.bind(qlen), ch.b[3], w.bind(delta)}, m, gx, gy, 1)
		w.dispatch("attention_backward_kv", 5, 1,
			[]binding{ch.b[0], ch.b[1], w.bind(lse), w.bind(delta), w.bind(qlen), ch.b[3]}, m, gx, gy, 1)
	}
}
