package gpu

import (
	"fmt"
	"math"
)

// maxHeadDim is the largest head size D the attention kernels hold in
// registers (DMAX in wgsl/attention_decode.wgsl, 4*DMAX4 in
// wgsl/attention.wgsl). GPT-2 uses 64, LLaMA-style models 128.
const maxHeadDim = 128

// attnWG is the number of queries per workgroup of wgsl/attention.wgsl (its WG).
const attnWG = 64

// kvShapes checks the shapes shared by KVStore and Attention and returns B,
// Tq, C and Tmax: qkv(B,Tq,3C) F32, kCache and vCache (B,Tmax,C) F32,
// start(B) and qlen(B) I32.
func kvShapes(op string, kCache, vCache, qkv, start, qlen Tensor) (b, tq, c, tmax int) {
	qs := qkv.Shape()
	if len(qs) != 3 || qs[2]%3 != 0 {
		panic(fmt.Sprintf("gpu: %s: qkv has shape %v, want (B, Tq, 3C)", op, qs))
	}
	b, tq, c = qs[0], qs[1], qs[2]/3
	CheckShape(op, "qkv", qkv, F32, b, tq, 3*c)
	CheckShape(op, "kCache", kCache, F32, b, -1, c)
	tmax = kCache.Shape()[1]
	CheckShape(op, "vCache", vCache, F32, b, tmax, c)
	CheckShape(op, "start", start, I32, b)
	CheckShape(op, "qlen", qlen, I32, b)
	return b, tq, c, tmax
}

// seqChunk is a run of sequences [start, start+n) of the two caches, bound
// as one storage range each.
type seqChunk struct {
	start, n int
	k, v     binding
}

// seqChunks splits the caches (B,Tmax,C) by whole sequences into ranges that
// fit one storage binding and start at an aligned offset. Caches up to the
// binding limit (128 MiB on many adapters: GPT-2 small at B=32, Tmax=1024)
// are one chunk.
func (w *WebGPU) seqChunks(op string, kCache, vCache Tensor, nb int) []seqChunk {
	kt, vt := w.t(kCache), w.t(vCache)
	if kt.bytes <= w.Limits.MaxStorageBufferBindingSize || nb <= 1 {
		return []seqChunk{{0, nb, w.bind(kCache), w.bind(vCache)}}
	}
	seqBytes := kt.bytes / uint64(nb)
	align := uint64(w.Limits.MinStorageOffsetAlignment)
	per := int(w.Limits.MaxStorageBufferBindingSize / seqBytes)
	for per > 0 && (uint64(per)*seqBytes)%align != 0 {
		per--
	}
	if per == 0 {
		panic(fmt.Sprintf("gpu: %s: cache sequences of %d bytes cannot be split into aligned bindings of at most %d bytes",
			op, seqBytes, w.Limits.MaxStorageBufferBindingSize))
	}
	var out []seqChunk
	for s := 0; s < nb; s += per {
		n := min(per, nb-s)
		off, size := uint64(s)*seqBytes, uint64(n)*seqBytes
		out = append(out, seqChunk{s, n,
			binding{buf: kt.buf, offset: off, size: size},
			binding{buf: vt.buf, offset: off, size: size}})
	}
	return out
}

// KVStore writes the keys qkv[b,i,C:2C] and values qkv[b,i,2C:3C] of rows
// i < qlen[b] into kCache and vCache (B,Tmax,C) at position start[b]+i.
// Positions outside [0, Tmax) are skipped rather than written. It panics
// if the shapes disagree.
func (w *WebGPU) KVStore(kCache, vCache, qkv, start, qlen Tensor) {
	nb, tq, c, tmax := kvShapes("KVStore", kCache, vCache, qkv, start, qlen)
	if tmax == 0 {
		return
	}
	if ks, vs, ok := w.kvTexturesCurrent(kCache, vCache, nb, tmax, c); ok {
		// Texture copies exist (decode attention reads them): keep them
		// current by writing them beside the buffers.
		gx, gy := w.grid1(ceilDiv(nb*tq*c/4, 64))
		w.nextBytes = 4 * float64(nb*tq) * float64(2*c) * 3
		w.dispatchTex("kvstore_tex", 3, 2, []binding{w.bind(qkv), w.bind(start), w.bind(qlen), w.bind(kCache), w.bind(vCache)},
			[]texBinding{{ks.tex, true}, {vs.tex, true}}, Meta{nb, 0, tq, c, tmax, int(ks.tex.w)}, gx, gy, 1)
		ks.gen, vs.gen = w.t(kCache).buf.gen, w.t(vCache).buf.gen
		return
	}
	for _, ch := range w.seqChunks("KVStore", kCache, vCache, nb) {
		gx, gy := w.grid1(ceilDiv(ch.n*tq*c, 256))
		// Reads the k and v columns of qkv and writes them: the cache itself
		// is bound whole but only these positions are touched.
		w.nextBytes = 4 * float64(ch.n*tq) * float64(2*c) * 2
		w.dispatch("kvstore", 3, 2, []binding{w.bind(qkv), w.bind(start), w.bind(qlen), ch.k, ch.v},
			Meta{ch.n, ch.start, tq, c, tmax}, gx, gy, 1)
	}
}

// Decode attention variants (WebGPU.AttentionDecodeVariant).
const (
	// AttentionDecodeWG: one workgroup per (sequence, head), its keys dealt
	// to 64 invocations whose partial softmaxes merge through workgroup
	// memory (wgsl/attention_decode.wgsl): for GPUs.
	AttentionDecodeWG = "wg"
	// AttentionDecodeLanes: one invocation per (sequence, head), no
	// barriers (wgsl/attention_decode_lanes.wgsl): for CPU adapters, where
	// a barrier costs more than the whole head's work at short contexts.
	// Contexts too long for lavapipe's per-invocation loop limit use the
	// workgroup kernel.
	AttentionDecodeLanes = "lanes"
)

// Attention computes causal multi-head attention of the queries qkv[b,i,0:C]
// (B,Tq,3C) at positions start[b]+i over the cached keys and values
// (B,Tmax,C) of their sequence into dst (B,Tq,C); rows i >= qlen[b] get
// zeros. Tq = 1 (decode) runs wgsl/attention_decode.wgsl, which spreads the
// keys over a workgroup, or attention_decode_lanes.wgsl (see
// AttentionDecodeVariant); any other Tq runs wgsl/attention.wgsl, one
// invocation per query. It panics if the shapes disagree, if C is not a
// multiple of nHead, or if the head size exceeds 128.
func (w *WebGPU) Attention(dst, qkv, kCache, vCache, start, qlen Tensor, nHead int) {
	nb, tq, c, tmax := kvShapes("Attention", kCache, vCache, qkv, start, qlen)
	CheckShape("Attention", "dst", dst, F32, nb, tq, c)
	if nHead <= 0 || c%nHead != 0 {
		panic(fmt.Sprintf("gpu: Attention: C=%d is not divisible by nHead=%d", c, nHead))
	}
	d := c / nHead
	if d > maxHeadDim {
		panic(fmt.Sprintf("gpu: Attention: head size %d exceeds the kernels' maximum of %d", d, maxHeadDim))
	}
	if d == 0 {
		return // C = 0: dst is empty
	}
	scale := float32(1 / math.Sqrt(float64(d)))
	name, nqb := "attention", ceilDiv(tq, attnWG)
	lanes := false
	if tq == 1 {
		name, nqb = "attention_decode", 1
		d4 := ceilDiv(d, 4)
		// lavapipe's per-invocation loop budget (see the kernel's header).
		lanesWanted := w.AttentionDecodeVariant == AttentionDecodeLanes || w.BatchInvariant
		if lanesWanted && (tmax/16+1)*(2*d4+1)+2*d4 < 60000 {
			name, lanes = "attention_decode_lanes", true
		}
	}
	if lanes && d%4 == 0 && w.Info.Type == "cpu" {
		// CPU adapters: K and V from texture copies of the cache (see
		// kvTextures); GPUs read the buffers.
		if ks, vs, ok := w.kvTextures(kCache, vCache, nb, tmax, c); ok {
			gx, gy := w.grid1(ceilDiv(nb*nHead, 8))
			if xt, ok := w.xTexFor(dst); ok {
				// dst is the output projection's x: write its texture too (xtex.go).
				w.dispatchTex("attention_decode_lanes_xt", 3, 1, []binding{w.bind(qkv), w.bind(start), w.bind(qlen), w.bind(dst)},
					[]texBinding{{ks.tex, false}, {vs.tex, false}, {xt.tex, true}},
					Meta{nb, 0, tq, c, tmax, nHead, d, nqb, scale, int(ks.tex.w), xt.rowsPer}, gx, gy, 1)
				w.xTexWritten(xt, dst)
				return
			}
			w.dispatchTex("attention_decode_lanes_tex", 3, 1, []binding{w.bind(qkv), w.bind(start), w.bind(qlen), w.bind(dst)},
				[]texBinding{{ks.tex, false}, {vs.tex, false}}, Meta{nb, 0, tq, c, tmax, nHead, d, nqb, scale, int(ks.tex.w)}, gx, gy, 1)
			return
		}
	}
	for _, ch := range w.seqChunks("Attention", kCache, vCache, nb) {
		wgs := ch.n * nHead * nqb
		if lanes {
			wgs = ceilDiv(ch.n*nHead, 8)
		}
		gx, gy := w.grid1(wgs)
		w.dispatch(name, 5, 1,
			[]binding{w.bind(qkv), ch.k, ch.v, w.bind(start), w.bind(qlen), w.bind(dst)},
			Meta{ch.n, ch.start, tq, c, tmax, nHead, d, nqb, scale}, gx, gy, 1)
	}
}

// kvLayout is the texture layout of a KV cache's copy (nb*tmax rows of c
// channels, 4 a texel, row-major: texel L = flat index / 4 at (L % width,
// L / width)); ok is false when the copy cannot be made (C not a multiple
// of 4, the cache over one storage binding, or over the 2D size limit).
func (w *WebGPU) kvLayout(nb, tmax, c int) (rowsPer int, tw, th uint32, ok bool) {
	if !w.HasTexRead || c%4 != 0 || uint64(nb)*uint64(tmax)*uint64(c)*4 > w.Limits.MaxStorageBufferBindingSize {
		return 0, 0, 0, false
	}
	rows := nb * tmax
	return texFit(rows, c/4, rows, w.Limits.MaxTextureDimension2D)
}

// kvTextures returns texture copies of the K and V caches (nb,tmax,c) for
// attention_decode_lanes_tex, made or copied again first where missing or
// stale (the buffer written since by anything but KVStore's texture
// variant), or ok false when the layout does not apply.
func (w *WebGPU) kvTextures(kCache, vCache Tensor, nb, tmax, c int) (ks, vs *shadow, ok bool) {
	rowsPer, tw, th, ok := w.kvLayout(nb, tmax, c)
	if !ok {
		return nil, nil, false
	}
	rows := nb * tmax
	get := func(x Tensor) *shadow {
		t := w.t(x)
		s := w.shadows[t.buf]
		fresh := s != nil && s.kv && s.rows == rows && s.k == c
		if !fresh {
			if s != nil {
				w.retire(s.tex)
				delete(w.shadows, t.buf)
			}
			tex, err := w.newTexture("kv", tw, th)
			if err != nil {
				w.rec.fail(err)
				return nil
			}
			s = &shadow{tex: tex, rows: rows, k: c, dt: F32, kt: c / 4, kv: true}
			w.shadows[t.buf] = s
		}
		if !fresh || s.gen != t.buf.gen {
			w.pack(F32, w.bind(x), s.tex, rows, c, c/4, rowsPer, 0, false)
			s.gen = t.buf.gen
		}
		return s
	}
	if ks, vs = get(kCache), get(vCache); ks == nil || vs == nil {
		return nil, nil, false
	}
	return ks, vs, true
}

// kvTexturesCurrent returns the K and V caches' texture copies if both
// exist and are current, without making them.
func (w *WebGPU) kvTexturesCurrent(kCache, vCache Tensor, nb, tmax, c int) (ks, vs *shadow, ok bool) {
	if _, _, _, ok := w.kvLayout(nb, tmax, c); !ok {
		return nil, nil, false
	}
	cur := func(x Tensor) *shadow {
		t := w.t(x)
		if s := w.shadows[t.buf]; s != nil && s.kv && s.rows == nb*tmax && s.k == c && s.gen == t.buf.gen {
			return s
		}
		return nil
	}
	if ks, vs = cur(kCache), cur(vCache); ks == nil || vs == nil {
		return nil, nil, false
	}
	return ks, vs, true
}
