package adaptrun

import "slices"

// selfCheck keeps a window's update only where the update lowers the
// loss of the window's own prompt (known at serving time after the
// prefill), scored from the same hidden states, or raises it by less than
// e.CheckSlack nats a token: the other windows of gs get cluster -1 (the
// base model). It leaves in e.lastCheck, per window,
// the adapted prompt's summed loss minus the base model's and the prompt
// tokens scored (Row.Check).
func (e *Evaluator) selfCheck(t *Trained, s *Set, grouping string, gs []group) error {
	ungated := GroupUngated
	if grouping == GroupStaticChecked {
		ungated = GroupStatic
	}
	ps := promptTargets(s)
	bs, err := e.Score(nil, ps, GroupBase, 1)
	if err != nil {
		return err
	}
	as, err := e.Score(t, ps, ungated, 1)
	if err != nil {
		return err
	}
	d := Scores{Loss: make([]float64, len(as.Loss)), N: slices.Clone(as.N)}
	for i := range d.Loss {
		d.Loss[i] = as.Loss[i] - bs.Loss[i]
	}
	for gi := range gs {
		for j, wi := range gs[gi].Members {
			if !(d.Loss[wi] < e.CheckSlack*float64(d.N[wi])) {
				gs[gi].Cluster[j] = -1
			}
		}
	}
	e.lastCheck = &d
	return nil
}
