package cluster

import (
	"errors"
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// Conformance returns the exported conformance suite of the clustering
// kernels, as gpu/conformance is the Backend's: each case runs Ops on
// both backends of a pair (OpsFor each) on the same random inputs, at
// awkward sizes, with outputs poisoned, and compares them. ops_test.go
// runs it with gputest.RunCases (the WebGPU ops against the reference);
// conformance.Check runs a case outside a test. It is a function, not a
// variable, so that binaries which never call it do not link it.
func Conformance() []conformance.Case {
	return []conformance.Case{
		{Name: "Features", Fn: confFeatures},
		{Name: "FeaturesNaN", Fn: confFeaturesNaN},
		{Name: "Assign", Fn: confAssign},
		{Name: "Update", Fn: confUpdate},
	}
}

// opsOf returns the clustering ops of the pair's backend under test and
// of its reference.
func opsOf(t conformance.T, p *conformance.Pair) (got, ref Ops) {
	got, err := OpsFor(p.Got)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if ref, err = OpsFor(p.Ref); err != nil {
		t.Fatalf("%v", err)
	}
	return got, ref
}

func confFeatures(t conformance.T, p *conformance.Pair) {
	g, r := opsOf(t, p)
	gg, _ := g.(*GPUOps)
	cases := []struct{ b, t, v, c int }{
		{1, 1, 1, 1}, {1, 5, 7, 3}, {3, 7, 50, 64}, {5, 33, 300, 768}, {17, 129, 1000, 127}, {4, 256, 64, 129},
	}
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		for _, gather := range []bool{false, true} {
			for _, cs := range cases {
				name := fmt.Sprintf("%v/gather=%v/B%d_T%d_V%d_C%d", dt, gather, cs.b, cs.t, cs.v, cs.c)
				if gather && gg == nil {
					continue // only the WebGPU ops have a gather path
				}
				conformance.Sub(t, name, func(t conformance.T) {
					if gg != nil {
						gg.gather = gather
						defer func() { gg.gather = false }()
					}
					featuresCase(t, p, g, r, dt, cs.b, cs.t, cs.v, cs.c)
				})
			}
		}
	}
}

func featuresCase(t conformance.T, p *conformance.Pair, g, r Ops, dt gpu.DType, b, tt, v, c int) {
	table := p.Randn(v*c, 1)
	for j := 0; j < c; j++ {
		table[j] = 0 // row 0 is zero: a sequence of only id 0 has a zero mean
	}
	tokens := make([]int32, b*tt)
	lengths := make([]int32, b)
	for s := 0; s < b; s++ {
		n := p.Rng.IntN(tt + 1)
		switch s % 4 {
		case 0:
			n = tt // full
		case 1:
			n = 0 // empty
		}
		lengths[s] = int32(n)
		for i := 0; i < tt; i++ {
			if i < n {
				tokens[s*tt+i] = int32(p.Rng.IntN(v))
				if s%4 == 3 {
					tokens[s*tt+i] = 0
				}
			} else {
				// Padding holds garbage: it must never be read.
				tokens[s*tt+i] = []int32{-1, int32(v), int32(v) + 12345, math.MinInt32, math.MaxInt32, int32(p.Rng.IntN(v))}[p.Rng.IntN(6)]
			}
		}
	}
	if b > 2 && lengths[2] > 0 {
		tokens[2*tt] = int32(v) + 7 // a real id outside the vocabulary adds nothing
		lengths[2] = -5             // clamped to 0
	}
	wte := p.Upload(t, dt, table, v, c)
	tok := p.Upload(t, gpu.I32, tokens, b, tt)
	lens := p.Upload(t, gpu.I32, lengths, b)
	dst := p.Poisoned(t, gpu.F32, b, c)
	defer p.Free(wte, tok, lens, dst)
	r.Features(dst.Ref, wte.Ref, tok.Ref, lens.Ref)
	g.Features(dst.Got, wte.Got, tok.Got, lens.Got)
	got, want := p.ReadBoth(t, dst)
	if err := conformance.AllClose(got, want, 2e-6, 2e-5); err != nil {
		t.Fatalf("features: %v", err)
	}
	// The reference itself: unit rows, zero rows for empty sequences.
	for s := 0; s < b; s++ {
		var ss float64
		for _, x := range want[s*c : (s+1)*c] {
			ss += float64(x) * float64(x)
		}
		zero := true // no real token with a nonzero row
		for i := 0; i < int(lengths[s]); i++ {
			if id := tokens[s*tt+i]; id > 0 && int(id) < v {
				zero = false
			}
		}
		if zero && ss != 0 || !zero && math.Abs(ss-1) > 1e-5 {
			t.Fatalf("reference feature %d (length %d) has squared norm %g", s, lengths[s], ss)
		}
	}
}

func confFeaturesNaN(t conformance.T, p *conformance.Pair) {
	g, r := opsOf(t, p)
	v, c, b, tt := 9, 5, 3, 4
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		table := p.Randn(v*c, 1)
		table[4*c+2] = float32(math.NaN())
		tokens := []int32{1, 2, 3, 4, 5, 4, 4, 4, 8, 8, 1, 2} // id 4 real only in sequence 0; padding of sequence 1
		lengths := []int32{4, 1, 4}
		wte := p.Upload(t, dt, table, v, c)
		tok := p.Upload(t, gpu.I32, tokens, b, tt)
		lens := p.Upload(t, gpu.I32, lengths, b)
		dst := p.Poisoned(t, gpu.F32, b, c)
		r.Features(dst.Ref, wte.Ref, tok.Ref, lens.Ref)
		g.Features(dst.Got, wte.Got, tok.Got, lens.Got)
		got, want := p.ReadBoth(t, dst)
		for i := range got {
			nan := i < c
			if math.IsNaN(float64(got[i])) != nan || math.IsNaN(float64(want[i])) != nan {
				t.Fatalf("%v: element %d: got %g, want %g; want NaN exactly in row 0", dt, i, got[i], want[i])
			}
		}
		for _, o := range []struct {
			ops Ops
			x   gpu.Tensor
		}{{g, dst.Got}, {r, dst.Ref}} {
			ops := o.ops
			if _, err := KMeans(ops, o.x, Config{K: 2}); err == nil || !errors.Is(err, ErrNonFinite) {
				t.Fatalf("%s: k-means of a NaN feature: err = %v, want ErrNonFinite", ops.Name(), err)
			} else {
				t.Logf("%s: %v", ops.Name(), err)
			}
		}
		p.Free(wte, tok, lens, dst)
	}
}

// nearTie reports whether label got is as near to point i as label want,
// within float32 rounding: d(got) <= d(want) + tol.
func nearTie(x, cents []float32, c, i, got, want, label0 int, stored float32) bool {
	d := func(l int) float64 {
		if l < label0 {
			return float64(stored)
		}
		k := l - label0
		if k < 0 || (k+1)*c > len(cents) {
			return math.Inf(1)
		}
		return sqDist(x[i*c:(i+1)*c], cents[k*c:(k+1)*c])
	}
	dw := d(want)
	return d(got) <= dw+1e-5*math.Max(1, dw)
}

func confAssign(t conformance.T, p *conformance.Pair) {
	g, r := opsOf(t, p)
	defer func(b int) { assignBudget = b }(assignBudget)
	for _, budget := range []int{32768, 100} { // 100 forces many centroid ranges
		assignBudget = budget
		for _, cs := range []struct{ n, c, k, label0 int }{
			{1, 1, 1, 0}, {1, 3, 5, 0}, {3, 3, 2, 4}, {127, 64, 7, 0}, {129, 768, 32, 3}, {1000, 3, 32, 0}, {70, 129, 65, 0},
		} {
			for _, merge := range []bool{false, true} {
				if merge && cs.label0 == 0 {
					continue
				}
				name := fmt.Sprintf("budget%d/N%d_C%d_K%d_l%d_merge=%v", budget, cs.n, cs.c, cs.k, cs.label0, merge)
				conformance.Sub(t, name, func(t conformance.T) { assignCase(t, p, g, r, cs.n, cs.c, cs.k, cs.label0, merge) })
			}
		}
	}
}

func assignCase(t conformance.T, p *conformance.Pair, g, r Ops, n, c, k, label0 int, merge bool) {
	xs := p.Randn(n*c, 1)
	cs := p.Randn(k*c, 1)
	if k > 3 {
		copy(cs[3*c:4*c], cs[1*c:2*c]) // exact duplicate centroids: ties go to the lower label
		copy(xs[0:c], cs[1*c:2*c])     // and point 0 sits on them
	}
	x := p.Upload(t, gpu.F32, xs, n, c)
	cents := p.Upload(t, gpu.F32, cs, k, c)
	var assign, dist conformance.Tensors
	stored := make([]float32, n)
	if merge {
		prevA := p.Ints(n, 0, label0)
		for i := range stored {
			stored[i] = float32(p.Rng.Float64() * 2 * float64(c))
		}
		assign = p.Upload(t, gpu.I32, prevA, n)
		dist = p.Upload(t, gpu.F32, stored, n)
	} else {
		assign = p.Poisoned(t, gpu.I32, n)
		dist = p.Poisoned(t, gpu.F32, n)
	}
	defer p.Free(x, cents, assign, dist)
	r.Assign(assign.Ref, dist.Ref, x.Ref, cents.Ref, label0, merge)
	g.Assign(assign.Got, dist.Got, x.Got, cents.Got, label0, merge)
	ga, wa := p.ReadBothI32(t, assign)
	for i := range ga {
		if ga[i] != wa[i] && !nearTie(xs, cs, c, i, int(ga[i]), int(wa[i]), label0, stored[i]) {
			t.Fatalf("point %d: label %d, want %d", i, ga[i], wa[i])
		}
	}
	if k > 3 && !merge && (ga[0] != int32(label0+1) || wa[0] != int32(label0+1)) {
		t.Fatalf("point on duplicate centroids 1 and 3: labels %d (gpu), %d (ref), want %d", ga[0], wa[0], label0+1)
	}
	p.Close(t, "dist", dist, 1e-5, 1e-5)
}

func confUpdate(t conformance.T, p *conformance.Pair) {
	g, r := opsOf(t, p)
	defer func(s int) { updateSeg = s }(updateSeg)
	for _, seg := range []int{32768, 7} { // 7 forces the summation in parts
		updateSeg = seg
		for _, cs := range []struct{ n, c, k int }{{1, 1, 1}, {3, 3, 2}, {127, 64, 7}, {129, 768, 32}, {1000, 3, 32}, {40, 129, 45}} {
			name := fmt.Sprintf("seg%d/N%d_C%d_K%d", seg, cs.n, cs.c, cs.k)
			conformance.Sub(t, name, func(t conformance.T) { updateCase(t, p, g, r, cs.n, cs.c, cs.k) })
		}
	}
}

func updateCase(t conformance.T, p *conformance.Pair, g, r Ops, n, c, k int) {
	xs := p.Randn(n*c, 1)
	assign := make([]int32, n)
	for i := range assign {
		assign[i] = int32(p.Rng.IntN(k))
		if k > 2 && assign[i] == 1 {
			assign[i] = 0 // cluster 1 is empty
		}
	}
	order, offsets, sizes := group(assign, k)
	reseed := make([]int32, k)
	for i := range reseed {
		reseed[i] = -1
		if sizes[i] == 0 && i%2 == 0 {
			reseed[i] = int32(p.Rng.IntN(n)) // some empty clusters re-seeded, others keep prev
		}
	}
	x := p.Upload(t, gpu.F32, xs, n, c)
	prev := p.Upload(t, gpu.F32, p.Randn(k*c, 1), k, c)
	ord := p.Upload(t, gpu.I32, order, n)
	off := p.Upload(t, gpu.I32, offsets, k+1)
	rs := p.Upload(t, gpu.I32, reseed, k)
	dst := p.Poisoned(t, gpu.F32, k, c)
	defer p.Free(x, prev, ord, off, rs, dst)
	r.Update(dst.Ref, x.Ref, prev.Ref, ord.Ref, off.Ref, rs.Ref)
	g.Update(dst.Got, x.Got, prev.Got, ord.Got, off.Got, rs.Got)
	p.Close(t, "centroids", dst, 1e-5, 1e-5)
	// The reference keeps prev for empty clusters without a reseed point.
	want, _ := p.Ref.ReadF32(dst.Ref)
	pv, _ := p.Ref.ReadF32(prev.Ref)
	for i, s := range sizes {
		if s == 0 && reseed[i] < 0 && want[i*c] != pv[i*c] {
			t.Fatalf("empty cluster %d did not keep its previous centroid", i)
		}
	}
}
