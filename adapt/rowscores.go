package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Scoring final hidden rows through the head: the self-check's base and
// adapted losses of a plan's prompts, without another forward.

// headScores is, for each plan sequence idx[k], its summed next-token loss
// under the plan's update computed from its final hidden rows (rows[idx[k]],
// the base model's: right for an adapter without block sites, whose update
// is the head's alone). Batches keep the logits under 64 MiB, as
// Model.ScoreChunked does.
func (p *Plan) headScores(idx []int, seqs [][]int32, rows [][]float32) ([]float64, [][]float32, error) {
	sums, per, err := p.rt.scoreRows(idx, seqs, rows, 1, func(index []int, h []float32, tg, head []int32) ([][]float32, error) {
		ls, err := p.scoreHead(index, h, tg, head)
		return [][]float32{ls}, err
	})
	if err != nil {
		return nil, nil, err
	}
	return sums[0], per[0], nil
}

// rowScorer scores hidden rows h (rows, C), row r of sequence index[head[r]]
// predicting tg[r] (-1: nothing), n ways: n per-row losses.
type rowScorer func(index []int, h []float32, tg, head []int32) ([][]float32, error)

// scoreRows runs score over the rows of the plan sequences idx (rows[i],
// seqs[i]'s final hidden rows) in batches whose logits stay under 64 MiB,
// as Model.ScoreChunked's do, and returns each of its n ways' summed loss
// per sequence and per-position losses.
func (r *Runtime) scoreRows(idx []int, seqs [][]int32, rows [][]float32, n int, score rowScorer) ([][]float64, [][][]float32, error) {
	m := r.M
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	maxRows := max(1, (64<<20)/(4*v))
	sums, per := make([][]float64, n), make([][][]float32, n)
	for w := range n {
		sums[w], per[w] = make([]float64, len(idx)), make([][]float32, len(idx))
	}
	for a := 0; a < len(idx); {
		b, nr := a, 0
		for b < len(idx) && (b == a || nr+len(seqs[idx[b]]) <= maxRows) {
			nr += len(seqs[idx[b]])
			b++
		}
		h := make([]float32, 0, nr*c)
		tg := make([]int32, 0, nr)
		head := make([]int32, 0, nr)
		for k := a; k < b; k++ {
			s := seqs[idx[k]]
			if len(rows[idx[k]]) != len(s)*c {
				return nil, nil, fmt.Errorf("adapt: self-check: sequence %d has %d hidden values for %d tokens", idx[k], len(rows[idx[k]]), len(s))
			}
			h = append(h, rows[idx[k]]...)
			for t := range s {
				next := int32(-1)
				if t+1 < len(s) {
					next = s[t+1]
				}
				tg, head = append(tg, next), append(head, int32(k-a))
			}
		}
		lss, err := score(idx[a:b], h, tg, head)
		if err != nil {
			return nil, nil, err
		}
		for w, ls := range lss {
			for r, l := range ls {
				if tg[r] < 0 {
					continue
				}
				if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
					return nil, nil, fmt.Errorf("adapt: self-check: non-finite loss in sequence %d", idx[a+int(head[r])])
				}
				j := int(head[r]) + a
				sums[w][j] += float64(l)
				per[w][j] = append(per[w][j], l)
			}
		}
		a = b
	}
	return sums, per, nil
}

// checkScores is, for each plan sequence idx[k] (adapted: its cluster in
// [0, K)), its summed next-token loss and per-position losses under the
// base model and under the plan's update, from its final hidden rows. One
// projection onto the vocabulary serves both: the base logits' loss is
// taken, then the low-rank update is added to them (Ops.LowRankU,
// AddLowRank) and the loss taken again.
func (p *Plan) checkScores(idx []int, seqs [][]int32, rows [][]float32) ([][]float64, [][][]float32, error) {
	return p.rt.scoreRows(idx, seqs, rows, 2, func(index []int, h []float32, tg, head []int32) ([][]float32, error) {
		m := p.rt.M
		be := m.B
		nr := len(tg)
		cl := make([]int32, nr)
		for r, k := range head {
			cl[r] = int32(p.Cluster[index[k]])
		}
		var live []gpu.Tensor
		defer func() {
			for _, t := range live {
				be.Free(t)
			}
		}()
		var err error
		alloc := func(dt gpu.DType, shape ...int) gpu.Tensor {
			if err != nil {
				return nil
			}
			t, e := be.Alloc(dt, shape...)
			if err = e; e == nil {
				live = append(live, t)
			}
			return t
		}
		hT, tgT, clT := alloc(gpu.F32, nr, m.Cfg.NEmbd), alloc(gpu.I32, nr), alloc(gpu.I32, nr)
		logits, loss, u := alloc(gpu.F32, nr, m.Cfg.VocabSize), alloc(gpu.F32, nr), alloc(gpu.F32, nr, p.factors.R)
		if err != nil {
			return nil, err
		}
		for _, x := range []struct {
			t gpu.Tensor
			v any
		}{{hT, h}, {tgT, tg}, {clT, cl}} {
			if err := be.Write(x.t, x.v); err != nil {
				return nil, err
			}
		}
		be.MatMul(logits, hT, m.W.Head(), nil)
		be.CrossEntropy(loss, logits, tgT)
		base, err := be.ReadF32(loss)
		if err != nil {
			return nil, err
		}
		p.rt.ops.LowRankU(u, hT, p.factors, clT, p.Alpha)
		if err := p.rt.ops.AddLowRank(logits, u, p.factors, clT); err != nil {
			return nil, err
		}
		be.CrossEntropy(loss, logits, tgT)
		adapted, err := be.ReadF32(loss)
		return [][]float32{base, adapted}, err
	})
}

// scoreHead runs the plan's head (its sequences index) on hidden rows h
// (rows, C) whose sequence in index is head[row] and returns each row's
// cross-entropy against tg.
func (p *Plan) scoreHead(index []int, h []float32, tg, head []int32) ([]float32, error) {
	m := p.rt.M
	be := m.B
	nr := len(tg)
	var live []gpu.Tensor
	defer func() {
		for _, t := range live {
			be.Free(t)
		}
	}()
	alloc := func(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
		t, err := be.Alloc(dt, shape...)
		if err == nil {
			live = append(live, t)
		}
		return t, err
	}
	hT, err := alloc(gpu.F32, nr, m.Cfg.NEmbd)
	if err != nil {
		return nil, err
	}
	tgT, err := alloc(gpu.I32, nr)
	if err != nil {
		return nil, err
	}
	logits, err := alloc(gpu.F32, nr, m.Cfg.VocabSize)
	if err != nil {
		return nil, err
	}
	loss, err := alloc(gpu.F32, nr)
	if err != nil {
		return nil, err
	}
	if err := be.Write(hT, h); err != nil {
		return nil, err
	}
	if err := be.Write(tgT, tg); err != nil {
		return nil, err
	}
	pass, err := p.AdapterOf(index, nil).Begin(head, head)
	if err != nil {
		return nil, err
	}
	defer pass.End()
	done, err := pass.Logits(logits, hT)
	if err != nil {
		return nil, err
	}
	if !done {
		be.MatMul(logits, hT, m.W.Head(), nil)
	}
	be.CrossEntropy(loss, logits, tgT)
	return be.ReadF32(loss)
}
