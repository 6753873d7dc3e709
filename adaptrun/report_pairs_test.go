package adaptrun

import (
	"strings"
	"testing"
)

// TestLikeForLike: the report pairs the primary's ungated, gated and
// self-checked rows with the LoRA baseline's rows of the same serving, seed
// by seed, behind each gate, and says nothing where a pair is missing.
func TestLikeForLike(t *testing.T) {
	const windows, seeds = 30, 3
	scores := func(shift float64, seed int) Scores {
		s := Scores{Loss: make([]float64, windows), N: make([]int, windows)}
		for i := range s.Loss {
			// A window-to-window spread the pairing removes, plus the shift.
			s.Loss[i] = 10 * (4 + float64((i*7+seed)%5)/10 + shift)
			s.N[i] = 10
		}
		return s
	}
	row := func(method, kind, grouping, gate, role string, shift, val float64) Row {
		r := Row{Name: method + " " + grouping + " " + gate, Method: method, Kind: kind, Grouping: grouping, Gate: gate, Role: role, Val: val}
		for s := range seeds {
			r.Test = append(r.Test, scores(shift+0.001*float64(s%2), s))
		}
		return r
	}
	res := &Result{Bootstrap: 200, TestDomains: []string{"d"}, TestDom: make([]int, windows), TestBytes: make([]int, windows), Rows: []Row{
		{Name: "base", Grouping: GroupBase, Role: RoleBase, Test: []Scores{scores(1, 0)}},
		row("lora", KindLoRA, GroupStatic, "", RoleBaseline, 0, 4.0),
		row("lora", KindLoRA, GroupStaticGated, "", RoleBaseline, 0.02, 4.1),
		row("lora", KindLoRA, GroupStaticGated, "embed", RoleBaseline, 0.02, 4.1),
		row("hyper", KindHyper, GroupUngated, "", RoleMethod, -0.03, 4.05),
		row("hyper", KindHyper, GroupOnline, "", RoleMethod, 0.05, 4.05),
		row("hyper", KindHyper, GroupOnline, "embed", RoleMethod, -0.01, 4.05),
	}}
	for i := range res.TestBytes {
		res.TestBytes[i] = 40
	}
	s := res.Summarise()
	all := strings.Join(s.Targets, "\n")
	for _, want := range []string{
		"like for like, online-ungated minus static: MET, 3 of 3 seeds below zero (-0.0300",
		"like for like, online minus static-gated: MISSED, 0 of 3 seeds below zero (+0.0300",
		"like for like, online minus static-gated behind the gate every method shares (embed): MET, 3 of 3 seeds below zero (-0.0300",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("targets lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "online-checked minus") {
		t.Errorf("a like-for-like line for rows the result lacks:\n%s", all)
	}
	// Without a LoRA among the baselines there is nothing to pair.
	res.Rows[1].Method, res.Rows[1].Kind, res.Rows[1].Grouping = "experts", KindExperts, GroupRouted
	if all := strings.Join(res.Summarise().Targets, "\n"); strings.Contains(all, "like for like") {
		t.Errorf("like-for-like lines against experts:\n%s", all)
	}
}
