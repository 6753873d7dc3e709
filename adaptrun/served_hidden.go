package adaptrun

import "slices"

// addHidden appends each window's unit hidden states without and with
// the plan (nil: none kept), sharing one slice where the plan left them
// unchanged (a head-only update).
func (s *Served) addHidden(base, adapted [][]float32) {
	for i, b := range base {
		a := adapted[i]
		if slices.Equal(a, b) {
			a = b
		}
		s.BaseHidden, s.AdaptedHidden = append(s.BaseHidden, b), append(s.AdaptedHidden, a)
	}
}
