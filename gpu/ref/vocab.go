package ref

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/chameleon-llm/chameleon/gpu"
)

// checkVocabRows panics unless t has dtype dt and m elements (one per row).
func checkVocabRows(op, arg string, t gpu.Tensor, dt gpu.DType, m int) {
	if t.DType() != dt || gpu.Numel(t.Shape()) != m {
		panic(fmt.Sprintf("ref: %s: %s is %v%v, want %v with %d elements", op, arg, t.DType(), t.Shape(), dt, m))
	}
}

// logSumExp returns the row's max and log(sum(exp(x - max))) in float64.
func logSumExp(row []float32) (mx, ls float64) {
	mx = math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	var s float64
	for _, x := range row {
		s += math.Exp(float64(x) - mx)
	}
	return mx, math.Log(s)
}

// LogSoftmax over the last dim: dst(M,V) = x - logsumexp(x).
func (*Backend) LogSoftmax(dst, x gpu.Tensor) {
	gpu.CheckShape("LogSoftmax", "x", x, gpu.F32, x.Shape()...)
	gpu.CheckShape("LogSoftmax", "dst", dst, gpu.F32, x.Shape()...)
	m, v := rowsCols(x)
	in, out := f(x), f(dst)
	for r := 0; r < m; r++ {
		row := in[r*v : (r+1)*v]
		mx, ls := logSumExp(row)
		for j, xv := range row {
			out[r*v+j] = float32((float64(xv) - mx) - ls)
		}
	}
}

// CrossEntropy: dst(M) = logsumexp(logits[m]) - logits[m, targets[m]]; a
// negative target gives 0 (masked) and a target >= V gives NaN, as the
// WebGPU kernel does.
func (*Backend) CrossEntropy(dst, logits, targets gpu.Tensor) {
	gpu.CheckShape("CrossEntropy", "logits", logits, gpu.F32, logits.Shape()...)
	m, v := rowsCols(logits)
	checkVocabRows("CrossEntropy", "targets", targets, gpu.I32, m)
	checkVocabRows("CrossEntropy", "dst", dst, gpu.F32, m)
	in, tg, out := f(logits), ints(targets), f(dst)
	for r := 0; r < m; r++ {
		t := int(tg[r])
		switch {
		case t < 0:
			out[r] = 0
		case t >= v:
			out[r] = float32(math.NaN())
		default:
			row := in[r*v : (r+1)*v]
			mx, ls := logSumExp(row)
			out[r] = float32(ls - (float64(row[t]) - mx))
		}
	}
}

// Argmax: dst(M) = index of each row's largest logit, the lowest among
// ties; NaN never wins and a row with no number gives 0.
func (*Backend) Argmax(dst, logits gpu.Tensor) {
	gpu.CheckShape("Argmax", "logits", logits, gpu.F32, logits.Shape()...)
	m, v := rowsCols(logits)
	checkVocabRows("Argmax", "dst", dst, gpu.I32, m)
	in, out := f(logits), ints(dst)
	for r := 0; r < m; r++ {
		i, _ := argmaxRow(in[r*v : (r+1)*v])
		out[r] = int32(max(i, 0))
	}
}

// argmaxRow returns the index and value of the row's largest non-NaN
// value (lowest index among ties), or -1 if there is none.
func argmaxRow(row []float32) (int, float32) {
	bi, bv := -1, float32(0)
	for j, x := range row {
		if isNaN(x) {
			continue
		}
		if bi < 0 || x > bv {
			bi, bv = j, x
		}
	}
	return bi, bv
}

func isNaN(x float32) bool { return x != x }

// Sample draws one token per row exactly as wgsl/sample.wgsl does (see
// gpu.WebGPU.Sample for the contract). The sums are split the way the
// kernel's workgroup of sampleLanes invocations splits them and rounded in
// f32 in the same order, so the two agree except where exp's last bit
// moves a uniform across a token boundary.
func (*Backend) Sample(dst, logits, uniforms gpu.Tensor, p gpu.SampleParams) {
	gpu.CheckShape("Sample", "logits", logits, gpu.F32, logits.Shape()...)
	m, v := rowsCols(logits)
	checkVocabRows("Sample", "uniforms", uniforms, gpu.F32, m)
	checkVocabRows("Sample", "dst", dst, gpu.I32, m)
	if v >= 1<<24 {
		panic(fmt.Sprintf("ref: Sample: V = %d, must be below %d", v, 1<<24))
	}
	in, us, out := f(logits), f(uniforms), ints(dst)
	greedy := !(p.Temperature > 0) || p.TopK == 1
	k, topP, invT := gpu.SampleMeta(p, v)
	for r := 0; r < m; r++ {
		row := in[r*v : (r+1)*v]
		if greedy {
			i, _ := argmaxRow(row)
			out[r] = int32(max(i, 0))
			continue
		}
		out[r] = int32(SampleRow(row, us[r], k, topP, invT))
	}
}

// sampleLanes and sampleGroups are the kernel's workgroup size and
// reduction group count (WG and G in wgsl/sample.wgsl).
const (
	sampleLanes  = 256
	sampleGroups = 16
)

// LogitKey maps a float32 to a uint32 with the same order (-inf < -0 < +0
// < +inf); NaN maps to 0, below every number. Sampling thresholds are keys.
func LogitKey(x float32) uint32 {
	if isNaN(x) {
		return 0
	}
	b := math.Float32bits(x)
	if b>>31 != 0 {
		return ^b
	}
	return b | 1<<31
}

// sampleProb is the unnormalised probability exp((x - mx) * invT), 0 for NaN.
func sampleProb(x, mx, invT float32) float32 {
	if isNaN(x) {
		return 0
	}
	return float32(math.Exp(float64(float32(float32(x-mx) * invT))))
}

// SampleThreshold returns the key threshold of the kept set of a row whose
// max mx is finite, with k and topP as gpu.SampleMeta normalises them. A
// token is kept when LogitKey(x) >= the threshold.
func SampleThreshold(row []float32, mx float32, k int, topP, invT float32) uint32 {
	kmin := ^uint32(0)
	for _, x := range row {
		if !isNaN(x) {
			kmin = min(kmin, LogitKey(x))
		}
	}
	kmax := LogitKey(mx)
	var thr uint32
	if k > 0 {
		// Lower bound of the k-th largest key: the smallest lane max when
		// at least k lanes saw a number, as the kernel.
		var laneMax [sampleLanes]uint32
		for j, x := range row {
			if !isNaN(x) {
				laneMax[j%sampleLanes] = max(laneMax[j%sampleLanes], LogitKey(x))
			}
		}
		lo, lanes := ^uint32(0), 0
		for _, m := range laneMax {
			if m != 0 { // keys of numbers are never 0
				lo, lanes = min(lo, m), lanes+1
			}
		}
		if k > lanes {
			lo = kmin
		}
		thr = keySearch(row, func(x float32) float32 {
			if isNaN(x) {
				return 0
			}
			return 1
		}, float32(k), 0, lo, kmax)
	}
	if topP < 1 {
		floor := thr
		thr = keySearch(row, func(x float32) float32 {
			if LogitKey(x) < floor {
				return 0
			}
			return sampleProb(x, mx, invT)
		}, 0, topP, max(floor, kmin), kmax)
	}
	return thr
}

// keySearch returns the largest key t with W(t) >= target and W(t) > 0,
// where W(t) sums weight(x) over the tokens with key >= t, building t three
// bits at a time (two in the top digit) as the kernel does: the digits above
// the highest bit where lo and hi differ come from lo, and the search starts
// at the digit holding that bit. With topP > 0 the target becomes topP *
// W(start), taken from the first pass.
func keySearch(row []float32, weight func(float32) float32, target, topP float32, lo, hi uint32) uint32 {
	hb := 0
	if d := lo ^ hi; d != 0 {
		hb = 31 - bits.LeadingZeros32(d)
	}
	sh0 := 30
	if hb < 30 {
		sh0 = hb / 3 * 3
	}
	var t uint32
	if sh0 < 30 {
		t = lo &^ (1<<(sh0+3) - 1)
	}
	var acc [sampleLanes][8]float32
	used := min(len(row), sampleLanes) // lanes past V stay zero: skipping them is exact
	for sh := sh0; sh >= 0; sh -= 3 {
		for l := range used {
			acc[l] = [8]float32{}
		}
		for j, x := range row {
			kk := LogitKey(x)
			if kk < t {
				continue
			}
			w := weight(x)
			e := min((kk-t)>>sh, 8)
			a := &acc[j%sampleLanes]
			for d := uint32(0); d < 8; d++ {
				if e >= d {
					a[d] += w
				}
			}
		}
		// Two levels, as the kernel: group q sums lanes q, q+G, ...; then the
		// group sums are added in order.
		var wd [8]float32
		for q := range sampleGroups {
			var g [8]float32
			for l := q; l < used; l += sampleGroups {
				for d := range 8 {
					g[d] += acc[l][d]
				}
			}
			for d := range 8 {
				wd[d] += g[d]
			}
		}
		if topP > 0 && sh == sh0 {
			target = topP * wd[0]
		}
		nc := 7
		if sh == 30 {
			nc = 3
		}
		best := 0
		for d := 1; d <= nc; d++ {
			if wd[d] >= target && wd[d] > 0 {
				best = d
			}
		}
		t += uint32(best) << sh
	}
	return t
}

// SampleRow draws one token of a row (V < 2^24) with uniform u, k, topP and
// invT as gpu.SampleMeta normalises them, by the kernel's steps: max,
// thresholds, chunked inverse CDF.
func SampleRow(row []float32, u float32, k int, topP, invT float32) int {
	g, mx := argmaxRow(row)
	if g < 0 || math.IsInf(float64(mx), 0) {
		return max(g, 0)
	}
	thr := SampleThreshold(row, mx, k, topP, invT)
	v := len(row)
	c := (v + sampleLanes - 1) / sampleLanes
	chunk := func(l int) (int, int) {
		s := min(l*c, v)
		return s, min(s+c, v)
	}
	var part [sampleLanes]float32
	for l := range part {
		s, e := chunk(l)
		for j := s; j < e; j++ {
			if LogitKey(row[j]) >= thr {
				part[l] += sampleProb(row[j], mx, invT)
			}
		}
	}
	// Exclusive scan in two levels, as the kernel: within groups of G
	// consecutive lanes, then over the group sums in order.
	var excl [sampleLanes]float32
	var gsum [sampleGroups]float32
	for gi := range gsum {
		var run float32
		for i := range sampleLanes / sampleGroups {
			l := gi*(sampleLanes/sampleGroups) + i
			excl[l] = run
			run += part[l]
		}
		gsum[gi] = run
	}
	var total float32
	var goff [sampleGroups]float32
	for gi := range gsum {
		goff[gi] = total
		total += gsum[gi]
	}
	for l := range excl {
		excl[l] = goff[l/(sampleLanes/sampleGroups)] + excl[l]
	}
	r := u * total
	owner := -1
	for l := range part {
		if part[l] > 0 && excl[l] <= r {
			owner = l
		}
	}
	if owner < 0 {
		return g
	}
	rl := r - excl[owner]
	var run float32
	last := -1
	s, e := chunk(owner)
	for j := s; j < e; j++ {
		if LogitKey(row[j]) < thr {
			continue
		}
		if p := sampleProb(row[j], mx, invT); p > 0 {
			run += p
			last = j
			if run > rl {
				return j
			}
		}
	}
	return last
}
