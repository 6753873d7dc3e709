package conformance

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

func init() {
	register("KVStore", testKVStore)
	register("Attention", testAttention)
}

// kvCase is one KVStore/Attention configuration: caches (B,Tmax,C), a step
// qkv (B,Tq,3C), H heads, and per-sequence start and qlen.
type kvCase struct {
	what        string
	nb, tq, c   int
	h, tmax     int
	start, qlen []int32
}

// cacheHistory returns cache contents for (B,Tmax,C) holding random
// earlier keys or values at positions < start[b] and NaN everywhere else,
// so that a kernel reading a position nobody wrote produces NaN.
func (p *Pair) cacheHistory(kc kvCase) []float32 {
	v := make([]float32, kc.nb*kc.tmax*kc.c)
	nan := float32(math.NaN())
	for b := 0; b < kc.nb; b++ {
		for j := 0; j < kc.tmax; j++ {
			row := v[(b*kc.tmax+j)*kc.c : (b*kc.tmax+j+1)*kc.c]
			for e := range row {
				if j < int(kc.start[b]) {
					row[e] = float32(p.Rng.NormFloat64())
				} else {
					row[e] = nan
				}
			}
		}
	}
	return v
}

// runKV uploads a step, runs KVStore on both backends and compares the
// whole caches exactly (NaN == NaN: untouched poison must stay). With
// attend, it then runs Attention on the stored caches and compares dst.
func (p *Pair) runKV(t T, kc kvCase, attend bool) {
	t.Helper()
	name := fmt.Sprintf("%s B=%d Tq=%d C=%d H=%d Tmax=%d", kc.what, kc.nb, kc.tq, kc.c, kc.h, kc.tmax)
	qkv := p.Upload(t, gpu.F32, p.Randn(kc.nb*kc.tq*3*kc.c, 1), kc.nb, kc.tq, 3*kc.c)
	kcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), kc.nb, kc.tmax, kc.c)
	vcache := p.Upload(t, gpu.F32, p.cacheHistory(kc), kc.nb, kc.tmax, kc.c)
	st := p.Upload(t, gpu.I32, kc.start, kc.nb)
	ql := p.Upload(t, gpu.I32, kc.qlen, kc.nb)
	defer p.Free(qkv, kcache, vcache, st, ql)
	p.Ref.KVStore(kcache.Ref, vcache.Ref, qkv.Ref, st.Ref, ql.Ref)
	p.Got.KVStore(kcache.Got, vcache.Got, qkv.Got, st.Got, ql.Got)
	p.Close(t, name+": kCache", kcache, 0, 0)
	p.Close(t, name+": vCache", vcache, 0, 0)
	if !attend {
		return
	}
	dst := p.Poisoned(t, gpu.F32, kc.nb, kc.tq, kc.c)
	defer p.Free(dst)
	p.Ref.Attention(dst.Ref, qkv.Ref, kcache.Ref, vcache.Ref, st.Ref, ql.Ref, kc.h)
	// Decode runs under both decode kernels on the WebGPU backend.
	variants := []string{""}
	wg, ok := p.Got.(*gpu.WebGPU)
	if ok && kc.tq == 1 {
		variants = []string{gpu.AttentionDecodeWG, gpu.AttentionDecodeLanes}
		old := wg.AttentionDecodeVariant
		defer func() { wg.AttentionDecodeVariant = old }()
	}
	for _, v := range variants {
		if v != "" {
			wg.AttentionDecodeVariant = v
			nan := make([]float32, kc.nb*kc.tq*kc.c)
			for i := range nan {
				nan[i] = float32(math.NaN())
			}
			if err := p.Got.Write(dst.Got, nan); err != nil {
				t.Fatalf("%v", err)
			}
		}
		p.Got.Attention(dst.Got, qkv.Got, kcache.Got, vcache.Got, st.Got, ql.Got, kc.h)
		p.Close(t, name+": dst "+v, dst, 1e-5, 1e-4)
	}
}

// prefill: start 0, ragged qlen in [0, Tq] with one full and one empty row.
func (p *Pair) prefill(nb, tq, c, h, tmax int) kvCase {
	kc := kvCase{what: "prefill", nb: nb, tq: tq, c: c, h: h, tmax: tmax,
		start: make([]int32, nb), qlen: p.Ints(nb, 0, tq+1)}
	kc.qlen[0] = int32(tq)
	if nb > 1 {
		kc.qlen[1] = 0
	}
	return kc
}

// decode: Tq = 1, every sequence at its own position; one padding
// sequence (qlen 0) when B > 2.
func (p *Pair) decode(nb, c, h, tmax int) kvCase {
	kc := kvCase{what: "decode", nb: nb, tq: 1, c: c, h: h, tmax: tmax,
		start: p.Ints(nb, 0, tmax), qlen: make([]int32, nb)}
	for b := range kc.qlen {
		kc.qlen[b] = 1
	}
	kc.start[0] = int32(tmax - 1)
	if nb > 2 {
		kc.qlen[2] = 0
	}
	return kc
}

// chunked: a prefill chunk of Tq rows after start > 0 cached positions
// (where Tmax allows), ragged qlen, start[b]+qlen[b] <= Tmax.
func (p *Pair) chunked(nb, tq, c, h, tmax int) kvCase {
	kc := kvCase{what: "chunked", nb: nb, tq: tq, c: c, h: h, tmax: tmax,
		start: p.Ints(nb, min(1, tmax-tq), tmax-tq+1), qlen: p.Ints(nb, 0, tq+1)}
	kc.qlen[0] = int32(tq)
	kc.start[0] = int32(tmax - tq) // ends exactly at Tmax
	return kc
}

var heads = [][2]int{{1, 1}, {3, 3}, {6, 2}, {12, 3}, {768, 12}}

func testKVStore(t T, p *Pair) {
	for _, nb := range []int{1, 3, 8} {
		for _, ch := range heads {
			for _, tmax := range []int{1, 7, 129} {
				p.runKV(t, p.prefill(nb, tmax, ch[0], ch[1], tmax), false)
				p.runKV(t, p.chunked(nb, min(tmax, 5), ch[0], ch[1], tmax), false)
			}
		}
	}
	// Callers must keep start+qlen <= Tmax; if they do not, positions
	// outside the cache are skipped, never written.
	kc := kvCase{what: "out of range", nb: 3, tq: 4, c: 6, h: 2, tmax: 7,
		start: []int32{5, -2, 7}, qlen: []int32{4, 4, 9}}
	p.runKV(t, kc, true)
	p.splitCaches(t)
}

func testAttention(t T, p *Pair) {
	for _, nb := range []int{1, 3, 8} {
		for _, ch := range heads {
			c, h := ch[0], ch[1]
			for _, tmax := range []int{1, 7, 129, 1024} {
				// Sizes that keep the float64 reference and lavapipe
				// quick: at GPT-2 width a prefill of up to 70 tokens
				// (two query blocks) and a short chunk late in the
				// context for at most 3 sequences.
				tq, tc, bc := tmax, min(tmax, 70), nb
				if c == 768 {
					tq, tc = min(tmax, 70), min(tmax, 9)
					if tmax == 1024 {
						bc = min(nb, 3)
					}
				} else if tmax == 1024 {
					tq = 300
				}
				p.runKV(t, p.prefill(nb, tq, c, h, tmax), true)
				p.runKV(t, p.decode(nb, c, h, tmax), true)
				p.runKV(t, p.chunked(bc, tc, c, h, tmax), true)
			}
		}
	}
}

// splitCaches checks caches larger than one storage binding, which the
// WebGPU backend splits by sequence: KVStore then decode at GPT-2 width.
// It runs only where the binding limit is small (<= 256 MiB) so that the
// test stays cheap.
func (p *Pair) splitCaches(t T) {
	w, ok := p.Got.(*gpu.WebGPU)
	if !ok {
		return
	}
	lim := w.Limits.MaxStorageBufferBindingSize
	const c, tmax = 768, 1024
	seq := uint64(tmax * c * 4)
	if lim > 256<<20 {
		t.Logf("binding limit %d bytes: split caches not exercised", lim)
		return
	}
	nb := int(lim/seq) + 2
	kc := p.decode(nb, c, 12, tmax)
	// Short histories keep the host work small; the last sequence, in
	// the last chunk, attends to its whole cache.
	for b := range kc.start {
		kc.start[b] %= 64
	}
	kc.start[nb-1] = tmax - 1
	p.runKV(t, kc, true)
}
