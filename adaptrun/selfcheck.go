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
	d, err := e.checkDiffs(t, s, grouping)
	if err != nil {
		return err
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

// checkDiffs is the self-check's evidence for every window of s: the
// prompt's summed loss with t's ungated update (the one the self-checked
// grouping would apply) minus the base model's, and the prompt tokens
// scored.
func (e *Evaluator) checkDiffs(t *Trained, s *Set, grouping string) (Scores, error) {
	ungated := GroupUngated
	if grouping == GroupStaticChecked {
		ungated = GroupStatic
	}
	ps := e.promptSet(s)
	bs, err := e.baseScores(ps)
	if err != nil {
		return Scores{}, err
	}
	as, err := e.Score(t, ps, ungated, 1)
	if err != nil {
		return Scores{}, err
	}
	d := Scores{Loss: make([]float64, len(as.Loss)), N: slices.Clone(as.N)}
	for i := range d.Loss {
		d.Loss[i] = as.Loss[i] - bs.Loss[i]
	}
	return d, nil
}

// promptSet is promptTargets(s), made once per set, so that the base
// model's prompt scores (baseScores) are computed once for every
// self-checked row and seed that checks s.
func (e *Evaluator) promptSet(s *Set) *Set {
	if ps, ok := e.prompts[s]; ok {
		return ps
	}
	if e.prompts == nil {
		e.prompts = map[*Set]*Set{}
	}
	ps := promptTargets(s)
	e.prompts[s] = ps
	return ps
}

// uncheckedOf is the gated grouping a self-checked grouping checks: a
// window it keeps scores as there, the others as the base model; "" where
// there is none to replay from (GroupTuned tunes what it applies).
func uncheckedOf(g string) string {
	switch g {
	case GroupChecked:
		return GroupOnline
	case GroupStaticChecked:
		return GroupStaticGated
	}
	return ""
}
