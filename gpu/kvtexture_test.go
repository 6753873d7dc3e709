package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// The texture copies of a KV cache that decode attention reads on CPU
// adapters follow the cache: made at the first decode, kept current by
// KVStore's texture variant, made again after any other write (a host
// write here). Checked against the reference backend's attention over the
// host's copy of the cache at each step.
//
// (Over 80 lines: one decode sequence whose every step checks the textures
// against the reference.)
func TestKVTexturesFollowWrites(t *testing.T) {
	w := gputest.Backend(t)
	if w.Info.Type == "cpu" && !w.HasTexRead {
		t.Fatal("a CPU adapter without read-only storage textures: the KV texture copies under test are off")
	}
	old := w.AttentionDecodeVariant
	w.AttentionDecodeVariant = gpu.AttentionDecodeLanes
	defer func() { w.AttentionDecodeVariant = old }()
	const nb, c, nh, tmax = 2, 16, 2, 8
	r := rand.New(rand.NewPCG(9, 10))
	rnd := func(n int) []float32 { return randSlice(r, n, 1) }
	kh, vh := rnd(nb*tmax*c), rnd(nb*tmax*c)
	rb := ref.New()
	// K and V caches, qkv, start, qlen and dst on each backend.
	alloc := func(b gpu.Backend) []gpu.Tensor {
		ts := []gpu.Tensor{gpu.Must(b.Alloc(gpu.F32, nb, tmax, c)), gpu.Must(b.Alloc(gpu.F32, nb, tmax, c)),
			gpu.Must(b.Alloc(gpu.F32, nb, 1, 3*c)), gpu.Must(b.Alloc(gpu.I32, nb)), gpu.Must(b.Alloc(gpu.I32, nb)),
			gpu.Must(b.Alloc(gpu.F32, nb, 1, c))}
		t.Cleanup(func() {
			for _, x := range ts {
				b.Free(x)
			}
		})
		return ts
	}
	g, h := alloc(w), alloc(rb)
	kc, vc, qkv, start, qlen, dst := g[0], g[1], g[2], g[3], g[4], g[5]
	rk, rv, rq, rs, rl, rd := h[0], h[1], h[2], h[3], h[4], h[5]
	for _, e := range []error{w.Write(kc, kh), w.Write(vc, vh), w.Write(qlen, []int32{1, 1}), rb.Write(rl, []int32{1, 1})} {
		if e != nil {
			t.Fatal(e)
		}
	}
	check := func(what string, q []float32, pos []int32) {
		t.Helper()
		if err := w.Write(start, pos); err != nil {
			t.Fatal(err)
		}
		w.Attention(dst, qkv, kc, vc, start, qlen, nh)
		got, err := w.ReadF32(dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []error{rb.Write(rk, kh), rb.Write(rv, vh), rb.Write(rq, q), rb.Write(rs, pos)} {
			if e != nil {
				t.Fatal(e)
			}
		}
		rb.Attention(rd, rq, rk, rv, rs, rl, nh)
		want := gpu.Must(rb.ReadF32(rd))
		for i, g := range got {
			if math.Abs(float64(g-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s: seq %d column %d = %v, want %v", what, i/c, i%c, g, want[i])
			}
		}
	}
	q := rnd(nb * 3 * c)
	if err := w.Write(qkv, q); err != nil {
		t.Fatal(err)
	}
	check("first decode (copies made)", q, []int32{3, 5})
	// A KV store at positions 4 and 6, then attention there: the copies
	// were written beside the buffers.
	q = rnd(nb * 3 * c)
	if err := w.Write(qkv, q); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(start, []int32{4, 6}); err != nil {
		t.Fatal(err)
	}
	w.KVStore(kc, vc, qkv, start, qlen)
	for b, p := range []int{4, 6} {
		copy(kh[(b*tmax+p)*c:(b*tmax+p+1)*c], q[b*3*c+c:b*3*c+2*c])
		copy(vh[(b*tmax+p)*c:(b*tmax+p+1)*c], q[b*3*c+2*c:b*3*c+3*c])
	}
	check("after a KV store", q, []int32{4, 6})
	// A host write to the keys: the copy is made again.
	kh = rnd(nb * tmax * c)
	if err := w.Write(kc, kh); err != nil {
		t.Fatal(err)
	}
	check("after a host write", q, []int32{7, 2})
}
