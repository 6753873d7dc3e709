package conformance

import (
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// Rows and vocabulary sizes of the vocabulary-wide ops.
var (
	vocabRows  = []int{1, 3, 8, 129}
	vocabSizes = []int{1, 3, 127, 129, 768, 50257}
)

func init() {
	register("LogSoftmax", testLogSoftmax)
	register("CrossEntropy", testCrossEntropy)
	register("Argmax", testArgmax)
	register("Sample", testSample)
}

// logits returns m rows of v logits, normal with std 2; every third row is
// offset by +1000 and every third by -300, which overflow a naive exp.
// quantised rows are rounded to multiples of 1/4 so that ties abound.
func (p *Pair) logits(m, v int, quantised bool) []float32 {
	x := p.Randn(m*v, 2)
	for r := 0; r < m; r++ {
		off := [3]float32{0, 1000, -300}[r%3]
		for j := r * v; j < (r+1)*v; j++ {
			if quantised && r%2 == 1 {
				x[j] = float32(math.Round(float64(x[j])*4) / 4)
			}
			x[j] += off
		}
	}
	return x
}

// filled returns n copies of v.
func filled[T any](n int, v T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func testLogSoftmax(t T, p *Pair) {
	RowWGs(p, func() { testLogSoftmaxOnce(t, p) })
}

func testLogSoftmaxOnce(t T, p *Pair) {
	for _, v := range vocabSizes {
		for _, m := range vocabRows {
			x := p.Upload(t, gpu.F32, p.logits(m, v, false), m, v)
			d := p.Poisoned(t, gpu.F32, m, v)
			p.Ref.LogSoftmax(d.Ref, x.Ref)
			p.Got.LogSoftmax(d.Got, x.Got)
			p.Close(t, fmt.Sprintf("%dx%d", m, v), d, 2e-5, 2e-6)
			p.Free(x, d)
		}
	}
}

func testCrossEntropy(t T, p *Pair) {
	RowWGs(p, func() { testCrossEntropyOnce(t, p) })
}

func testCrossEntropyOnce(t T, p *Pair) {
	for _, v := range vocabSizes {
		for _, m := range vocabRows {
			tg := p.Ints(m, 0, v)
			for r := range tg {
				switch {
				case r%5 == 3:
					tg[r] = -1 // masked
				case r%11 == 7:
					tg[r] = -100 // masked
				case r%7 == 5:
					tg[r] = int32(v + r%2) // out of range: NaN
				}
			}
			x := p.Upload(t, gpu.F32, p.logits(m, v, false), m, v)
			tk := p.Upload(t, gpu.I32, tg, m)
			// Not NaN-poisoned: out-of-range rows must be written as NaN.
			d := p.Upload(t, gpu.F32, filled(m, float32(-7777)), m)
			p.Ref.CrossEntropy(d.Ref, x.Ref, tk.Ref)
			p.Got.CrossEntropy(d.Got, x.Got, tk.Got)
			got, want := p.ReadBoth(t, d)
			for r, g := range got {
				if tg[r] < 0 && g != 0 {
					t.Errorf("%dx%d: masked row %d: got %g, want 0", m, v, r, g)
				}
				if int(tg[r]) >= v && !math.IsNaN(float64(g)) {
					t.Errorf("%dx%d: row %d with target %d >= V: got %g, want NaN", m, v, r, tg[r], g)
				}
			}
			if err := AllClose(got, want, 2e-5, 2e-6); err != nil {
				t.Errorf("%dx%d: %v", m, v, err)
			}
			p.Free(x, tk, d)
		}
	}
}

// tiedLogits returns logits whose row maxima are repeated at several
// places, some rows with NaNs (which never win) and, for m >= 3, row 2
// entirely NaN (Argmax gives 0).
func (p *Pair) tiedLogits(m, v int) []float32 {
	x := p.logits(m, v, true)
	for r := 0; r < m; r++ {
		row := x[r*v : (r+1)*v]
		top := slices.Max(row)
		for range p.Rng.IntN(4) {
			row[p.Rng.IntN(v)] = top
		}
		if r%4 == 1 {
			row[0] = float32(math.NaN())
			row[p.Rng.IntN(v)] = float32(math.NaN())
		}
		if r == 2 {
			for j := range row {
				row[j] = float32(math.NaN())
			}
		}
	}
	return x
}

func testArgmax(t T, p *Pair) {
	for _, v := range vocabSizes {
		for _, m := range vocabRows {
			x := p.Upload(t, gpu.F32, p.tiedLogits(m, v), m, v)
			d := p.Poisoned(t, gpu.I32, m)
			p.Ref.Argmax(d.Ref, x.Ref)
			p.Got.Argmax(d.Got, x.Got)
			got, want := p.ReadBothI32(t, d)
			if !slices.Equal(got, want) {
				t.Errorf("%dx%d: got %v, want %v", m, v, head(got), head(want))
			}
			p.Free(x, d)
		}
	}
}

func head[T any](s []T) []T { return s[:min(len(s), 12)] }

// uniforms returns n values in [0, 1) as float32.
func (p *Pair) uniforms(n int) []float32 {
	u := p.Uniform(n, 0, 1)
	for i := range u {
		if u[i] >= 1 {
			u[i] = math.Nextafter32(1, 0)
		}
	}
	return u
}

// sampleRun runs Sample on both backends and returns the tokens.
func (p *Pair) sampleRun(t T, x []float32, u []float32, m, v int, sp gpu.SampleParams) (got, want []int32) {
	t.Helper()
	lg := p.Upload(t, gpu.F32, x, m, v)
	us := p.Upload(t, gpu.F32, u, m)
	d := p.Poisoned(t, gpu.I32, m)
	p.Ref.Sample(d.Ref, lg.Ref, us.Ref, sp)
	p.Got.Sample(d.Got, lg.Got, us.Got, sp)
	got, want = p.ReadBothI32(t, d)
	p.Free(lg, us, d)
	return got, want
}

// keptSet is the contract's kept set of a row, computed independently of
// both backends by sorting, in float64: the tokens whose logit is >= the
// TopK-th largest, then the highest-probability values (ties included)
// until their mass reaches TopP*(1+slack) of the top-k mass. A positive
// slack gives a superset that tolerates f32 rounding in the mass sums, a
// negative one a subset.
func keptSet(row []float32, sp gpu.SampleParams, slack float64) []bool {
	v := len(row)
	k, topP, invT := gpu.SampleMeta(sp, v)
	order := make([]int, v)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case row[a] > row[b]:
			return -1
		case row[a] < row[b]:
			return 1
		}
		return 0
	})
	mx := row[order[0]]
	cut := row[order[v-1]]
	if k > 0 {
		cut = row[order[k-1]]
	}
	if topP < 1 {
		w := func(x float32) float64 { return math.Exp(float64(float32(x-mx)) * float64(invT)) }
		var z float64
		for _, x := range row {
			if x >= cut {
				z += w(x)
			}
		}
		target := float64(topP) * z * (1 + slack)
		var cum float64
		for i := 0; i < v && row[order[i]] >= cut; {
			val := row[order[i]]
			for ; i < v && row[order[i]] == val; i++ {
				cum += w(val)
			}
			if cum >= target {
				cut = val
				break
			}
		}
	}
	kept := make([]bool, v)
	for j, x := range row {
		kept[j] = x >= cut
	}
	return kept
}

func testSample(t T, p *Pair) {
	Sub(t, "greedy", func(t T) { testSampleGreedy(t, p) })
	if _, ok := p.Got.(*gpu.WebGPU); !ok {
		Sub(t, "filtered", func(t T) { testSampleFiltered(t, p) })
	} else {
		// Both workgroup sizes of the kernel, whichever this adapter uses.
		for _, wg := range []int{64, 256} {
			Sub(t, fmt.Sprintf("filtered/WG=%d", wg), func(t T) {
				defer func(old int) { gpu.SampleWorkgroup = old }(gpu.SampleWorkgroup)
				gpu.SampleWorkgroup = wg
				testSampleFiltered(t, p)
			})
		}
	}
	Sub(t, "distribution", func(t T) { testSampleDistribution(t, p) })
}

// testSampleGreedy: Temperature <= 0 and TopK == 1 give exactly Argmax.
func testSampleGreedy(t T, p *Pair) {
	for _, sz := range [][2]int{{3, 1}, {129, 129}, {8, 768}, {8, 50257}} {
		m, v := sz[0], sz[1]
		x := p.tiedLogits(m, v)
		lg := p.Upload(t, gpu.F32, x, m, v)
		am := p.Poisoned(t, gpu.I32, m)
		p.Ref.Argmax(am.Ref, lg.Ref)
		p.Got.Argmax(am.Got, lg.Got)
		gotArg, wantArg := p.ReadBothI32(t, am)
		p.Free(lg, am)
		for _, sp := range []gpu.SampleParams{{Temperature: 0, TopP: 0.9}, {Temperature: -1, TopK: 5},
			{Temperature: 0.8, TopK: 1, TopP: 0.95}} {
			got, want := p.sampleRun(t, x, p.uniforms(m), m, v, sp)
			if !slices.Equal(got, gotArg) || !slices.Equal(want, wantArg) {
				t.Errorf("%dx%d %+v: got %v and ref %v, want Argmax %v", m, v, sp, head(got), head(want), head(wantArg))
			}
		}
	}
}

// testSampleFiltered: at least 99% of rows agree exactly with the
// reference, and every token either backend draws lies in the kept set; the
// reference's own kept set lies between the independent sort-based sets
// with -/+ 1e-4 relative slack on the top-p mass.
func testSampleFiltered(t T, p *Pair) {
	const slack = 1e-4
	params := []gpu.SampleParams{
		{Temperature: 0.8, TopK: 40, TopP: 0.95},
		{Temperature: 1, TopK: 0, TopP: 0.9},
		{Temperature: 1.3, TopK: 5, TopP: 1},
		{Temperature: 0.7, TopK: 0, TopP: 1},
		{Temperature: 1, TopK: 1 << 20, TopP: 0.5},
		{Temperature: 2, TopK: 3, TopP: 0.3},
	}
	// Every parameter set runs at every V; 129-row batches (costly on
	// lavapipe, where each of the kernel's ~50 barriers per row is slow)
	// only with the first two sets.
	sizes := [][2]int{{1, 1}, {3, 3}, {8, 127}, {8, 129}, {3, 768}, {1, 50257}, {3, 50257}}
	big := [][2]int{{129, 129}, {129, 768}}
	rows, differ := 0, 0
	for i, sp := range params {
		szs := sizes
		if i < 2 {
			szs = append(slices.Clip(sizes), big...)
		}
		for _, sz := range szs {
			m, v := sz[0], sz[1]
			x := p.logits(m, v, true)
			got, want := p.sampleRun(t, x, p.uniforms(m), m, v, sp)
			k, topP, invT := gpu.SampleMeta(sp, v)
			for r := 0; r < m; r++ {
				row := x[r*v : (r+1)*v]
				what := fmt.Sprintf("%dx%d %+v row %d", m, v, sp, r)
				tight, loose := keptSet(row, sp, -slack), keptSet(row, sp, slack)
				thr := ref.SampleThreshold(row, slices.Max(row), k, topP, invT)
				for j, xv := range row {
					in := ref.LogitKey(xv) >= thr
					if (tight[j] && !in) || (in && !loose[j]) {
						t.Fatalf("%s: reference keeps token %d (logit %g): %v; independent sets: %v..%v",
							what, j, xv, in, tight[j], loose[j])
					}
				}
				for _, c := range []struct {
					who string
					tok int32
				}{{"gpu", got[r]}, {"ref", want[r]}} {
					if c.tok < 0 || int(c.tok) >= v {
						t.Fatalf("%s: %s drew token %d, out of range", what, c.who, c.tok)
					}
					if !loose[c.tok] {
						t.Errorf("%s: %s drew token %d (logit %g), outside the kept set", what, c.who, c.tok, row[c.tok])
					}
				}
				rows++
				if got[r] != want[r] {
					differ++
					t.Logf("%s: gpu drew %d, ref %d", what, got[r], want[r])
				}
			}
		}
	}
	if differ*100 > rows {
		t.Errorf("%d of %d rows differ from the reference (more than 1%%)", differ, rows)
	}
	t.Logf("%d of %d rows differ from the reference", differ, rows)
}

// testSampleDistribution: one 10-token row drawn with 4000 uniforms. Tokens
// outside the kept set must never appear, and a chi-square test of the kept
// tokens' counts against the renormalised filtered distribution must pass
// (threshold 50 with at most 9 degrees of freedom: a correct sampler fails
// with probability below 1e-7). The logits are set so that top-k and top-p
// each remove a large share of the mass: a sampler ignoring either fails.
func testSampleDistribution(t T, p *Pair) {
	const v, n = 10, 4000
	sp := gpu.SampleParams{Temperature: 1, TopK: 6, TopP: 0.8}
	row := make([]float32, v)
	off := float32(p.Rng.NormFloat64() * 10)
	for i, j := range p.Rng.Perm(v) {
		row[j] = off - 0.3*float32(i)
	}
	kept := keptSet(row, sp, 0)
	for _, check := range []gpu.SampleParams{{Temperature: 1, TopP: 0.8}, {Temperature: 1, TopK: 6, TopP: 1}} {
		if slices.Equal(kept, keptSet(row, check, 0)) {
			t.Fatalf("test construction: %+v keeps the same tokens as %+v", check, sp)
		}
	}
	prob := make([]float64, v)
	var z float64
	for j, x := range row {
		if kept[j] {
			prob[j] = math.Exp(float64(x - off))
			z += prob[j]
		}
	}
	x := make([]float32, 0, n*v)
	for range n {
		x = append(x, row...)
	}
	got, want := p.sampleRun(t, x, p.uniforms(n), n, v, sp)
	differ := 0
	for r := range got {
		if got[r] != want[r] {
			differ++
		}
	}
	if differ*100 > n {
		t.Errorf("%d of %d rows differ from the reference", differ, n)
	}
	count := make([]int, v)
	for _, tok := range got {
		if tok < 0 || tok >= v {
			t.Fatalf("token %d out of range", tok)
		}
		count[tok]++
	}
	var chi2 float64
	for j := range row {
		if !kept[j] {
			if count[j] != 0 {
				t.Errorf("token %d (logit %g) is outside the kept set but was drawn %d times", j, row[j], count[j])
			}
			continue
		}
		e := n * prob[j] / z
		chi2 += (float64(count[j]) - e) * (float64(count[j]) - e) / e
	}
	t.Logf("logits %v kept %v counts %v chi2 %.2f", row, kept, count, chi2)
	if chi2 > 50 {
		t.Errorf("chi-square %.1f > 50: counts %v do not follow the filtered distribution", chi2, count)
	}
}
