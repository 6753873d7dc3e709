package adaptrun

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// GroupTuned (a gated basis): online, gated and self-checked as
// GroupChecked, and then each batch's gates, generated from its centroid,
// are tuned on the batch's own prompts (Evaluator.Tune) before the rest
// of its windows is scored: test-time training of the R gates of one
// cluster on the tokens a server has prefilled anyway.
const GroupTuned = "online-tuned"

// Tune is GroupTuned's test-time training: Steps Adam steps of rate LR on
// the gates alone (the network and the pair stay fixed), each on the mean
// loss of the batch's prompt tokens; the runtime's (adapt.PlanOptions.Tune).
type Tune = adapt.Tune

// promptBatch is the batch of g's windows cut to their prompts: rows j <
// Prompt, row j predicting token j+1 while that is inside the prompt.
func (s *Set) promptBatch(g group) AdapterBatch {
	var bt AdapterBatch
	for i, wi := range g.Members {
		t := len(s.Hidden[wi]) / s.C
		p := min(t, s.Prompt)
		bt.H = append(bt.H, s.Hidden[wi][:p*s.C]...)
		for j := range p {
			tg := int32(-1)
			if j+1 < p {
				tg = s.Windows[wi].Tokens[j+1]
			}
			bt.Targets = append(bt.Targets, tg)
			bt.Cluster = append(bt.Cluster, int32(g.Cluster[i]))
		}
	}
	bt.K, bt.Means = max(g.K, 1), g.Means
	return bt
}

// TunedLosses scores bt (a gated basis) with gates tuned on pb, the same
// windows' prompt rows: the network's gates for bt.Means, then tu.Steps
// Adam steps on the gates against pb's mean loss, then bt's row losses
// (nats, 0 for rows without a target) under the tuned gates. Rows of
// cluster -1 neither move the gates nor are adapted.
func (n *AdapterNet) TunedLosses(bt, pb AdapterBatch, tu Tune) ([]float32, error) {
	if !n.Meta.Basis {
		return nil, fmt.Errorf("adaptrun: tuned gates are for a gated basis, not a %s adapter", n.Meta.Kind)
	}
	s, err := n.forward(pb, nil)
	if err != nil {
		return nil, err
	}
	g, err := n.B.ReadF32(s.packed)
	s.free()
	if err != nil {
		return nil, err
	}
	var opt adapt.Adam
	for step := 1; step <= tu.Steps && s.rows > 0; step++ {
		pb.Gates = g
		grad, err := n.gateGrad(pb)
		if err != nil {
			return nil, err
		}
		opt.Step(g, grad, tu.LR)
	}
	bt.Gates = g
	return n.Losses(bt)
}

// gateGrad is the gradient of pb's mean loss with respect to its gates
// pb.Gates (K, R).
func (n *AdapterNet) gateGrad(pb AdapterBatch) ([]float32, error) {
	s, err := n.forward(pb, nil)
	if err != nil {
		return nil, err
	}
	defer s.free()
	dl, err := s.alloc(gpu.F32, s.m, n.Meta.Base.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	n.B.CrossEntropyBackward(dl, s.logits, s.tg, float32(1/float64(max(s.rows, 1))))
	dp, err := s.alloc(gpu.F32, s.packed.Shape()...)
	if err != nil {
		return nil, err
	}
	if err := s.basisBackward(dl, dp, pb.Cluster); err != nil {
		return nil, err
	}
	return n.B.ReadF32(dp)
}
