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
	items := make([]rowItems, len(idx))
	for j, i := range idx {
		var err error
		if items[j], err = windowItems(seqs[i], rows[i], nil, p.rt.M.Cfg.NEmbd); err != nil {
			return nil, nil, fmt.Errorf("adapt: self-check: sequence %d: %w", i, err)
		}
	}
	sums, per, err := p.rt.scoreRows(idx, items, nil, 1, func(index []int, h rowBatch, tg, head []int32) ([][]float32, error) {
		ls, err := p.scoreHead(index, h, tg, head)
		return [][]float32{ls}, err
	})
	if err != nil {
		return nil, nil, err
	}
	return sums[0], per[0], nil
}

// rowItems is the hidden rows of one sequence that a scorer projects, h
// (len(tg), C) on the host, or at, their rows in a device tensor (the
// scorer's src), and the token each predicts.
type rowItems struct {
	h  []float32
	at []int32
	tg []int32
}

// deviceItems is windowItems for a sequence s whose final hidden rows are
// rows first.. of a device tensor: the rows' indices, not their values.
func deviceItems(s []int32, first int, offs []int) (rowItems, error) {
	offs, err := predictingOffsets(s, offs)
	if err != nil {
		return rowItems{}, err
	}
	it := rowItems{at: make([]int32, len(offs)), tg: make([]int32, len(offs))}
	for j, o := range offs {
		it.at[j], it.tg[j] = int32(first+o), s[o+1]
	}
	return it, nil
}

// predictingOffsets is offs (nil: every row of s that predicts a token,
// 0..len(s)-2), refused where an offset predicts nothing in s.
func predictingOffsets(s []int32, offs []int) ([]int, error) {
	if offs == nil {
		for o := 0; o+1 < len(s); o++ {
			offs = append(offs, o)
		}
	}
	for _, o := range offs {
		if o < 0 || o+1 >= len(s) {
			return nil, fmt.Errorf("row %d predicts nothing in %d tokens", o, len(s))
		}
	}
	return offs, nil
}

// rowBatch is the hidden rows a scorer projects: h (rows, C) on the host,
// or, where src is set, rows at of the device tensor src (N, C), gathered
// on the device (Backend.Rows) with no read-back or upload of the rows.
type rowBatch struct {
	h   []float32
	src gpu.Tensor
	at  []int32
}

// upload puts the batch's n rows of width c in hT, an (n, c) tensor it
// allocates through alloc.
func (rb rowBatch) upload(be gpu.Backend, alloc func(gpu.DType, ...int) (gpu.Tensor, error), n, c int) (gpu.Tensor, error) {
	hT, err := alloc(gpu.F32, n, c)
	if err != nil {
		return nil, err
	}
	if rb.src == nil {
		return hT, be.Write(hT, rb.h)
	}
	at, err := alloc(gpu.I32, n)
	if err != nil {
		return nil, err
	}
	if err := be.Write(at, rb.at); err != nil {
		return nil, err
	}
	be.Rows(hT, rb.src, at)
	return hT, nil
}

// windowItems is the rows of sequence s (rows: its final hidden rows,
// (len(s), C)) at offsets offs, each predicting the next token of s; nil
// offs: every row that predicts one (0..len(s)-2).
func windowItems(s []int32, rows []float32, offs []int, c int) (rowItems, error) {
	if len(rows) != len(s)*c {
		return rowItems{}, fmt.Errorf("%d hidden values for %d tokens", len(rows), len(s))
	}
	offs, err := predictingOffsets(s, offs)
	if err != nil {
		return rowItems{}, err
	}
	it := rowItems{h: make([]float32, 0, len(offs)*c), tg: make([]int32, len(offs))}
	for j, o := range offs {
		it.h, it.tg[j] = append(it.h, rows[o*c:(o+1)*c]...), s[o+1]
	}
	return it, nil
}

// rowScorer scores hidden rows h, row r of sequence index[head[r]]
// predicting tg[r], n ways: n per-row losses.
type rowScorer func(index []int, h rowBatch, tg, head []int32) ([][]float32, error)

// scoreRows runs score over items (items[k]: plan sequence idx[k]'s rows,
// on the host, or, with src, rows of that device tensor) in batches whose
// logits stay under 64 MiB, as Model.ScoreChunked's do, and returns each
// of its n ways' summed loss per sequence and per-row losses, in items'
// order.
func (r *Runtime) scoreRows(idx []int, items []rowItems, src gpu.Tensor, n int, score rowScorer) ([][]float64, [][][]float32, error) {
	m := r.M
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	maxRows := max(1, (64<<20)/(4*v))
	sums, per := make([][]float64, n), make([][][]float32, n)
	for w := range n {
		sums[w], per[w] = make([]float64, len(idx)), make([][]float32, len(idx))
	}
	for a := 0; a < len(idx); {
		b, nr := a, 0
		for b < len(idx) && (b == a || nr+len(items[b].tg) <= maxRows) {
			nr += len(items[b].tg)
			b++
		}
		if nr == 0 {
			a = b
			continue
		}
		h := rowBatch{src: src}
		if src == nil {
			h.h = make([]float32, 0, nr*c)
		} else {
			h.at = make([]int32, 0, nr)
		}
		tg := make([]int32, 0, nr)
		head := make([]int32, 0, nr)
		for k := a; k < b; k++ {
			h.h, h.at, tg = append(h.h, items[k].h...), append(h.at, items[k].at...), append(tg, items[k].tg...)
			for range items[k].tg {
				head = append(head, int32(k-a))
			}
		}
		lss, err := score(idx[a:b], h, tg, head)
		if err != nil {
			return nil, nil, err
		}
		for w, ls := range lss {
			for r, l := range ls {
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
// [0, K)), the losses of items[k]'s rows under the base model and under
// the plan's update ([0] and [1]). One projection onto the vocabulary
// serves both: the base logits' loss is taken, then the low-rank update is
// added to them (Ops.LowRankU, then AddLowRank) and the loss taken again;
// for a gated basis, whose clusters share one B, the update's logits are
// one MatMul of u with it and Ops.CrossEntropyPair takes both losses in
// one pass. On lavapipe, for 2,048 rows at V = 4096, R = 60, the expand
// and the two cross-entropies took 210-260 ms per-row, 105 ms with the
// matmul and a MatMulAdd.
func (p *Plan) checkScores(idx []int, items []rowItems, src gpu.Tensor) ([][][]float32, error) {
	_, pers, err := p.rt.scoreRows(idx, items, src, 2, func(index []int, h rowBatch, tg, head []int32) ([][]float32, error) {
		m := p.rt.M
		be := m.B
		nr := len(tg)
		p.rt.checkRows += nr
		cl := make([]int32, nr)
		for r, k := range head {
			cl[r] = int32(p.Cluster[index[k]])
		}
		sc := gpu.Scratch{B: be}
		defer sc.Free()
		var err error
		alloc := func(dt gpu.DType, shape ...int) gpu.Tensor {
			if err != nil {
				return nil
			}
			var t gpu.Tensor
			t, err = sc.Alloc(dt, shape...)
			return t
		}
		tgT, clT := alloc(gpu.I32, nr), alloc(gpu.I32, nr)
		logits, u := alloc(gpu.F32, nr, m.Cfg.VocabSize), alloc(gpu.F32, nr, p.factors.R)
		baseLoss, adaptedLoss := alloc(gpu.F32, nr), alloc(gpu.F32, nr)
		// A gated basis shares one B among its clusters: the update's
		// logits of every row are then one matmul of u with it, and one
		// pass over both takes both losses (CrossEntropyPair).
		var delta gpu.Tensor
		if p.rt.basisB != nil {
			delta = alloc(gpu.F32, nr, m.Cfg.VocabSize)
		}
		if err != nil {
			return nil, err
		}
		for _, x := range []struct {
			t gpu.Tensor
			v any
		}{{tgT, tg}, {clT, cl}} {
			if err := be.Write(x.t, x.v); err != nil {
				return nil, err
			}
		}
		hT, err := h.upload(be, func(dt gpu.DType, shape ...int) (gpu.Tensor, error) { return alloc(dt, shape...), err }, nr, m.Cfg.NEmbd)
		if err != nil {
			return nil, err
		}
		be.MatMul(logits, hT, m.W.Head(), nil)
		p.rt.ops.LowRankU(u, hT, p.factors, clT, p.Alpha)
		if delta != nil {
			be.MatMul(delta, u, p.rt.basisB, nil)
			if err := p.rt.ops.CrossEntropyPair(baseLoss, adaptedLoss, logits, delta, tgT); err != nil {
				return nil, err
			}
		} else {
			be.CrossEntropy(baseLoss, logits, tgT)
			if err := p.rt.ops.AddLowRank(logits, u, p.factors, clT); err != nil {
				return nil, err
			}
			be.CrossEntropy(adaptedLoss, logits, tgT)
		}
		// Read both after recording both: one wait for the device.
		adapted, err := be.ReadF32(adaptedLoss)
		if err != nil {
			return nil, err
		}
		base, err := be.ReadF32(baseLoss)
		return [][]float32{base, adapted}, err
	})
	return pers, err
}

// scoreHead runs the plan's head (its sequences index) on hidden rows h
// (rows, C) whose sequence in index is head[row] and returns each row's
// cross-entropy against tg.
func (p *Plan) scoreHead(index []int, h rowBatch, tg, head []int32) ([]float32, error) {
	m := p.rt.M
	be := m.B
	nr := len(tg)
	sc := gpu.Scratch{B: be}
	defer sc.Free()
	alloc := sc.Alloc
	hT, err := h.upload(be, alloc, nr, m.Cfg.NEmbd)
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
