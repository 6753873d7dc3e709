package adaptrun

import "slices"

// scoredBatch is batch(g, scale) without the positions that have no
// target: for scoring, where the head's logits of a position depend on
// that position's hidden state and its cluster's update alone.
func (s *Set) scoredBatch(g group, scale float32) AdapterBatch {
	var bt AdapterBatch
	c := s.C
	for i, wi := range g.Members {
		for j, tg := range s.Targets[wi] {
			if tg < 0 {
				continue
			}
			h := s.Hidden[wi][j*c : (j+1)*c]
			if scale != 1 {
				h = slices.Clone(h)
				for k := range h {
					h[k] *= scale
				}
			}
			bt.H = append(bt.H, h...)
			bt.Targets = append(bt.Targets, tg)
			bt.Cluster = append(bt.Cluster, int32(g.Cluster[i]))
		}
	}
	bt.K, bt.Means = g.K, g.Means
	if bt.K == 0 {
		bt.K = 1
	}
	return bt
}

// batch assembles a group's rows; the hidden states are multiplied by
// scale (a softmax temperature of 1/scale, since the head has no bias).
func (s *Set) batch(g group, scale float32) AdapterBatch {
	var bt AdapterBatch
	for i, wi := range g.Members {
		h := s.Hidden[wi]
		if scale != 1 {
			h = slices.Clone(h)
			for j := range h {
				h[j] *= scale
			}
		}
		bt.H = append(bt.H, h...)
		bt.Targets = append(bt.Targets, s.Targets[wi]...)
		for range s.Targets[wi] {
			bt.Cluster = append(bt.Cluster, int32(g.Cluster[i]))
		}
	}
	bt.K, bt.Means = g.K, g.Means
	if bt.K == 0 {
		bt.K = 1
	}
	return bt
}
