package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// neuralMixCases are confNeuralMix's shapes: rows M, width C, vocabulary
// V (not a multiple of the workgroup but one), pool keys, own keys per
// row (a row's keys outnumber the workgroup's 256 in two), and GPT-2's
// head.
var neuralMixCases = []struct{ m, c, v, pool, own int }{
	{1, 8, 7, 3, 2},
	{5, 64, 300, 40, 17},
	{9, 256, 4099, 300, 280},
	{7, 33, 256, 600, 5},
	{2, 768, 50257, 120, 64},
}

// logSoftmaxRows turns rows of v values into log-probabilities.
func logSoftmaxRows(x []float32, v int) {
	for r := 0; r+v <= len(x); r += v {
		row := x[r : r+v]
		mx, sum := row[0], 0.0
		for _, y := range row {
			mx = max(mx, y)
		}
		for _, y := range row {
			sum += math.Exp(float64(y - mx))
		}
		for j := range row {
			row[j] -= mx + float32(math.Log(sum))
		}
	}
}

// confNeuralMix checks ncache_mix on random inputs: log-probability rows
// (some peaked), unit keys (some close to a row's query) whose values
// repeat a few tokens (and some outside the vocabulary), rows with own and
// pool keys, either or neither, rows off (with and without a key slot),
// a zero query, thetas from 5 to 100; dst and the key slots written are
// compared. It also checks that both backends refuse C over NeuralMaxC.
func confNeuralMix(t conformance.T, p *conformance.Pair) {
	ro, go_ := New(p.Ref), New(p.Got)
	for _, sh := range neuralMixCases {
		// Key buffer: the pool block, each row's own block, then one slot per row.
		kn := sh.pool + sh.m*sh.own + sh.m
		h := p.Randn(sh.m*sh.c, 1)
		if sh.m > 3 {
			clear(h[3*sh.c : 4*sh.c]) // a zero query
		}
		keys := make([]float32, 0, kn*sh.c)
		for k := 0; k < sh.pool+sh.m*sh.own; k++ {
			x := p.Randn(sh.c, 1)
			if k%3 == 0 { // near some row's query: a sharp match
				r := p.Rng.IntN(sh.m)
				for i := range x {
					x[i] = h[r*sh.c+i] + 0.2*x[i]
				}
			}
			keys = append(keys, UnitRows(x, sh.c)...)
		}
		keys = append(keys, p.Randn(sh.m*sh.c, 1)...) // slots: overwritten where a row writes
		vals := make([]int32, kn)
		common := p.Ints(4, 0, sh.v)
		for k := range vals {
			switch p.Rng.IntN(8) {
			case 0:
				vals[k] = int32(p.Rng.IntN(sh.v))
			case 1:
				vals[k] = []int32{-1, int32(sh.v)}[p.Rng.IntN(2)] // outside: denominator only
			default:
				vals[k] = common[p.Rng.IntN(len(common))]
			}
		}
		lp := p.Randn(sh.m*sh.v, 3)
		for m := 1; m < sh.m; m += 3 {
			lp[m*sh.v+m%sh.v] += 25 // a near-certain token
		}
		logSoftmaxRows(lp, sh.v)
		rp, most := NeuralRowParams(neuralMixRows(p, sh.m, sh.pool, sh.own))
		in := []conformance.Tensors{p.Upload(t, gpu.F32, h, sh.m, sh.c), p.Upload(t, gpu.F32, keys, kn, sh.c),
			p.Upload(t, gpu.I32, vals, kn), p.Upload(t, gpu.F32, rp, sh.m, 8), p.Upload(t, gpu.F32, lp, sh.m, sh.v)}
		for _, run := range []struct {
			ops Ops
			get func(conformance.Tensors) gpu.Tensor
		}{{ro, func(x conformance.Tensors) gpu.Tensor { return x.Ref }}, {go_, func(x conformance.Tensors) gpu.Tensor { return x.Got }}} {
			if err := run.ops.NeuralMix(run.get(in[4]), run.get(in[0]), run.get(in[1]), run.get(in[2]), run.get(in[3]), most); err != nil {
				t.Fatalf("NeuralMix M=%d C=%d V=%d: %v", sh.m, sh.c, sh.v, err)
			}
		}
		what := fmt.Sprintf("NeuralMix M=%d C=%d V=%d keys=%d", sh.m, sh.c, sh.v, most)
		p.Close(t, what+" dst", in[4], 2e-5, 2e-5)
		p.Close(t, what+" keys", in[1], 1e-6, 1e-6)
		p.Free(in...)
	}
	// A hidden width the kernel does not take is an error on both backends.
	wide := []conformance.Tensors{p.Upload(t, gpu.F32, p.Randn(NeuralMaxC+1, 1), 1, NeuralMaxC+1),
		p.Upload(t, gpu.F32, p.Randn(NeuralMaxC+1, 1), 1, NeuralMaxC+1), p.Upload(t, gpu.I32, []int32{0}, 1),
		p.Upload(t, gpu.F32, make([]float32, 8), 1, 8), p.Upload(t, gpu.F32, []float32{0}, 1, 1)}
	if ro.NeuralMix(wide[4].Ref, wide[0].Ref, wide[1].Ref, wide[2].Ref, wide[3].Ref, 1) == nil ||
		go_.NeuralMix(wide[4].Got, wide[0].Got, wide[1].Got, wide[2].Got, wide[3].Got, 1) == nil {
		t.Errorf("NeuralMix with C=%d: no error", NeuralMaxC+1)
	}
	p.Free(wide...)
}

// neuralMixRows are confNeuralMix's rows over a key buffer of pool keys,
// own keys per row and then one slot per row: own ranges of own, own-1 or
// own-2 keys, random pool ranges, weights and thetas varying by row, rows
// with no own keys, no pool keys, off with a slot, or off (by m % 7).
func neuralMixRows(p *conformance.Pair, nrows, pool, own int) []NeuralRow {
	var rows []NeuralRow
	for m := range nrows {
		r := NeuralRow{OwnOff: pool + m*own, OwnLen: own - m%3, Theta: []float64{5, 10, 20, 40, 100}[m%5],
			Own: []float64{0.1, 0.3, 0.05}[m%3], Pool: []float64{0.2, 0, 0.1, 0.4}[m%4], Slot: pool + nrows*own + m}
		r.PoolOff = p.Rng.IntN(pool)
		r.PoolLen = 1 + p.Rng.IntN(pool-r.PoolOff)
		switch m % 7 {
		case 2:
			r.OwnLen = 0
		case 4:
			r.PoolLen = 0
		case 5:
			r.Own, r.Pool = 0, 0 // off, writing its slot
		case 6:
			r.Own, r.Pool, r.Slot = 0, 0, -1 // off
		}
		if m == 0 && nrows > 1 {
			r.Slot = -1
		}
		rows = append(rows, r)
	}
	return rows
}
