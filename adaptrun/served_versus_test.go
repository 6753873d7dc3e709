package adaptrun

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestVersus pairs two served scores of the same windows: the rows read b's
// adapted loss minus a's per token, Kept is b's, and scores of other
// windows (split, domains, token counts, base losses) are refused.
func TestVersus(t *testing.T) {
	served := func(adapted []float64, kept []bool) *Served {
		return &Served{Split: "validation", Domains: []string{"x", "x", "y"},
			Base:    Scores{Loss: []float64{30, 40, 50}, N: []int{10, 10, 20}},
			Adapted: Scores{Loss: adapted, N: []int{10, 10, 20}}, Kept: kept}
	}
	a := served([]float64{25, 40, 45}, []bool{true, false, true})
	b := served([]float64{20, 38, 47}, []bool{true, true, true})
	v, err := Versus(a, b)
	if err != nil {
		t.Fatal(err)
	}
	rows := v.Rows([]string{"x", "y"}, map[string]string{"x": RoleAdapt, "y": RoleAdapt}, 200)
	want := map[string]struct {
		diff float64
		kept int
	}{"x": {(20 + 38 - 25 - 40) / 20.0, 2}, "y": {(47 - 45) / 20.0, 1}, "all " + RoleAdapt: {(20 + 38 + 47 - 25 - 40 - 45) / 40.0, 3}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		w, ok := want[r.Name]
		if !ok || math.Abs(r.Diff.Mean-w.diff) > 1e-12 || r.Kept != w.kept {
			t.Fatalf("row %s: diff %+.4f kept %d, want %+.4f and %d", r.Name, r.Diff.Mean, r.Kept, w.diff, w.kept)
		}
		if math.Abs(r.BasePPL-math.Exp(map[string]float64{"x": 65.0 / 20, "y": 45.0 / 20, "all " + RoleAdapt: 110.0 / 40}[r.Name])) > 1e-9 {
			t.Fatalf("row %s: a's perplexity %g is not a's adapted one", r.Name, r.BasePPL)
		}
	}
	var md bytes.Buffer
	WriteVersusMarkdown(&md, "plain", "select8", rows)
	if !strings.Contains(md.String(), "select8 - plain") || strings.Count(md.String(), "\n") != 2+len(rows) {
		t.Fatalf("markdown:\n%s", md.String())
	}
	for name, edit := range map[string]func(s *Served){
		"split":     func(s *Served) { s.Split = "test" },
		"domains":   func(s *Served) { s.Domains = []string{"x", "y", "y"} },
		"tokens":    func(s *Served) { s.Base.N = []int{10, 11, 20} },
		"base loss": func(s *Served) { s.Base.Loss = []float64{30, 40.5, 50} },
	} {
		c := served([]float64{20, 38, 47}, []bool{true, true, true})
		c.Base = Scores{Loss: append([]float64(nil), c.Base.Loss...), N: append([]int(nil), c.Base.N...)}
		edit(c)
		if _, err := Versus(a, c); err == nil {
			t.Errorf("%s differs: paired anyway", name)
		}
	}
}
