package adaptrun

// batch assembles a group's rows, one for every position of its windows;
// the hidden states are multiplied by scale (a softmax temperature of
// 1/scale, since the head has no bias).
func (s *Set) batch(g group, scale float32) AdapterBatch { return s.rows(g, scale, false) }

// scoredBatch is batch(g, scale) without the positions that have no
// target: for scoring, where the head's logits of a position depend on
// that position's hidden state and its cluster's update alone.
func (s *Set) scoredBatch(g group, scale float32) AdapterBatch { return s.rows(g, scale, true) }

// rows is batch (scoredOnly false) and scoredBatch (true).
func (s *Set) rows(g group, scale float32, scoredOnly bool) AdapterBatch {
	var bt AdapterBatch
	c := s.C
	for i, wi := range g.Members {
		for j, tg := range s.Targets[wi] {
			if scoredOnly && tg < 0 {
				continue
			}
			for _, x := range s.Hidden[wi][j*c : (j+1)*c] {
				bt.H = append(bt.H, x*scale)
			}
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
