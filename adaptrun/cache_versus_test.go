package adaptrun

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// lowered is synthServed whose adapter lowers every scored token of the
// "lang" windows' loss by d.
func lowered(split string, perDomain int, seed uint64, d float32) *Served {
	s := synthServed(split, perDomain, seed)
	s.Adapted = Scores{}
	for i, lp := range s.AdaptedTok {
		x := make([]float32, len(lp))
		for j, l := range lp {
			x[j] = l
			if s.Domains[i] == "lang" {
				x[j] = l - d
			}
		}
		s.AdaptedTok[i] = x
		s.Adapted = appendScored(s.Adapted, x, s.Prompt)
	}
	return s
}

// TestCacheVersus: two adapters' runs over the same windows, adapter rows
// only, compared row by row through the JSON: the adapter-alone row's
// difference is exactly the known shift, and mismatched runs are refused.
func TestCacheVersus(t *testing.T) {
	uni := make([]float64, 64)
	for i := range uni {
		uni[i] = 1.0 / 64
	}
	roles := map[string]string{"lang": RoleHeldOut, "known": RolePretrain}
	o := CacheOpts{Prior: uni, Betas: []float64{1}, Batch: 8, Seed: 1, Bootstrap: 200, AdaptedOnly: true, KeepScores: true}
	run := func(d float32) *CacheResult {
		t.Helper()
		r, err := EvalCache(lowered("validation", 8, 1, d), lowered("test", 16, 2, d), lowered("harm", 16, 3, d), roles, []string{"lang", "known"}, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := run(0), run(0.3)
	for _, x := range a.Streams[0].Rows {
		if !strings.Contains(x.Name, "adapter") {
			t.Fatalf("AdaptedOnly scored %q", x.Name)
		}
		if x.PerWindow == nil || len(x.PerWindow.Loss) != a.Streams[0].Windows {
			t.Fatalf("%q kept no per-window losses", x.Name)
		}
	}
	path := filepath.Join(t.TempDir(), "b.json.gz")
	if err := b.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	bl, err := LoadCacheResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Versus(bl, "b", 200); err != nil {
		t.Fatal(err)
	}
	// The test stream is half "lang" windows of equal length: a's
	// adapter-alone loss is 0.3 * 1/2 above b's.
	v := a.Against.Streams[0]
	if v.Name != "test" || v.Rows[0].Name != cacheVariants[0].name {
		t.Fatalf("versus %+v", v)
	}
	if d := v.Rows[0].Diff; math.Abs(d.Mean-0.15) > 1e-6 || !(d.Lo <= d.Mean && d.Mean <= d.Hi) {
		t.Fatalf("adapter row: a minus b %+v, want +0.15", d)
	}
	var md strings.Builder
	a.Markdown(&md)
	if !strings.Contains(md.String(), "Against b, **test**") {
		t.Fatal("no versus table in the Markdown")
	}
	// Runs without per-window losses, or of other windows, are refused.
	o.KeepScores = false
	c, err := EvalCache(lowered("validation", 8, 1, 0), lowered("test", 16, 2, 0), nil, roles, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "c.json.gz")
	if err := c.WriteJSON(cp); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadCacheResult(cp); err != nil {
		t.Fatal(err)
	}
	if err := a.Versus(c, "c", 100); err == nil || !strings.Contains(err.Error(), "per-window") {
		t.Fatalf("versus a run without per-window losses: %v", err)
	}
	o.KeepScores = true
	d, err := EvalCache(lowered("validation", 8, 1, 0), lowered("test", 12, 2, 0), nil, roles, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Versus(d, "d", 100); err == nil || !strings.Contains(err.Error(), "windows") {
		t.Fatalf("versus a run of other windows: %v", err)
	}
}
