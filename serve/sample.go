package serve

import (
	"github.com/chameleon-llm/chameleon/gpu"
)

// sample draws the next token of the slots in rows from logits (B, V), on
// the backend. Backend.Sample applies one SampleParams to all its rows, so
// rows are grouped by their sequence's params (in slot order) and each
// group's rows are gathered into a (G, V) tensor and sampled with one call;
// each row's uniform comes from its own sequence's RNG. For the rows whose
// run asked for logprobs, their logits rows are gathered and
// log-softmaxed on the backend and only those rows are read back. It
// returns ids[i] and lps[i] (nil without logprobs) for rows[i].
//
// (Over 80 lines: one step's sampling: the groups by parameters, the draws and
// the logprobs rows share the gathered logits and their frees.)
func (s *Scheduler) sample(logits gpu.Tensor, rows []int) (ids []int32, lps [][]float32, err error) {
	if len(rows) == 0 {
		return nil, nil, nil
	}
	be := s.m.Backend()
	V := logits.Shape()[len(logits.Shape())-1]
	sc := gpu.Scratch{B: be}
	defer sc.Free()
	alloc := sc.Alloc
	// gather returns the rows of logits for slots, gathered unless they are
	// every row in order.
	gather := func(slots []int) (gpu.Tensor, error) {
		if len(slots) == logits.Shape()[0] {
			identity := true
			for i, b := range slots {
				identity = identity && i == b
			}
			if identity {
				return logits, nil
			}
		}
		idx := make([]int32, len(slots))
		for i, b := range slots {
			idx[i] = int32(b)
		}
		it, err := alloc(gpu.I32, len(idx))
		if err != nil {
			return nil, err
		}
		if err := be.Write(it, idx); err != nil {
			return nil, err
		}
		sub, err := alloc(gpu.F32, len(slots), V)
		if err != nil {
			return nil, err
		}
		be.Rows(sub, logits, it)
		return sub, nil
	}

	type group struct {
		p     gpu.SampleParams
		pos   []int // indices into rows
		slots []int
		dst   gpu.Tensor
	}
	var groups []*group
	byParams := map[gpu.SampleParams]*group{}
	var lpPos, lpSlots []int
	for i, b := range rows {
		q := s.slots[b]
		g := byParams[q.params]
		if g == nil {
			g = &group{p: q.params}
			byParams[q.params] = g
			groups = append(groups, g)
		}
		g.pos, g.slots = append(g.pos, i), append(g.slots, b)
		if q.run.task.Logprobs >= 0 {
			lpPos, lpSlots = append(lpPos, i), append(lpSlots, b)
		}
	}
	for _, g := range groups {
		sub, err := gather(g.slots)
		if err != nil {
			return nil, nil, err
		}
		u := make([]float32, len(g.slots))
		for i, b := range g.slots {
			u[i] = float32(s.slots[b].rng.Float64()) // one draw per sampled token, as model.Generate
		}
		ut, err := alloc(gpu.F32, len(u))
		if err != nil {
			return nil, nil, err
		}
		if err := be.Write(ut, u); err != nil {
			return nil, nil, err
		}
		if g.dst, err = alloc(gpu.I32, len(u)); err != nil {
			return nil, nil, err
		}
		be.Sample(g.dst, sub, ut, g.p)
	}
	var lsm gpu.Tensor
	if len(lpSlots) > 0 {
		sub, err := gather(lpSlots)
		if err != nil {
			return nil, nil, err
		}
		if lsm, err = alloc(gpu.F32, len(lpSlots), V); err != nil {
			return nil, nil, err
		}
		be.LogSoftmax(lsm, sub)
	}
	ids = make([]int32, len(rows))
	for _, g := range groups {
		got, err := be.ReadI32(g.dst)
		if err != nil {
			return nil, nil, err
		}
		for i, p := range g.pos {
			ids[p] = got[i]
		}
	}
	lps = make([][]float32, len(rows))
	if lsm != nil {
		all, err := be.ReadF32(lsm)
		if err != nil {
			return nil, nil, err
		}
		for i, p := range lpPos {
			lps[p] = all[i*V : (i+1)*V : (i+1)*V]
		}
	}
	return ids, lps, nil
}

// topLogprobs returns the k largest entries of lp (ties: lower id first),
// most likely first; nil for k <= 0.
func topLogprobs(lp []float32, k int) []TopLogprob {
	if k <= 0 {
		return nil
	}
	top := make([]TopLogprob, 0, k+1)
	for id, v := range lp {
		if len(top) == k && !(v > top[k-1].Logprob) {
			continue
		}
		i := len(top)
		for i > 0 && v > top[i-1].Logprob {
			i--
		}
		top = append(top, TopLogprob{})
		copy(top[i+1:], top[i:])
		top[i] = TopLogprob{ID: int32(id), Logprob: v}
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}
