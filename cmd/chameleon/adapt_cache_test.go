package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

// adapt cache --from-json redraws a saved run; with --versus it adds the
// row-by-row comparison with another run of the same windows, and refuses
// a run without per-window losses.
func TestAdaptCacheRedrawVersus(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, shift float64, keep bool) string {
		sc := adaptrun.Scores{Loss: []float64{10 + shift, 20 + shift, 30 + shift}, N: []int{5, 5, 5}}
		row := adaptrun.CacheRow{Name: "adapter (served plan, no cache)", Role: adaptrun.RoleBaseline, PPL: 2}
		if keep {
			row.PerWindow = &sc
		}
		r := &adaptrun.CacheResult{Streams: []adaptrun.CacheStream{{Name: "test", Windows: 3, Rows: []adaptrun.CacheRow{row}}}}
		p := filepath.Join(dir, name)
		if err := r.WriteJSON(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, none := write("a.json.gz", 0, true), write("b.json.gz", 1.5, true), write("n.json.gz", 0, false)
	out := filepath.Join(dir, "out")
	if _, stderr, err := run(t, "", "adapt", "cache", "--from-json", a, "--versus", b, "--out", out); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	md, err := os.ReadFile(filepath.Join(out, "cache.md"))
	if err != nil {
		t.Fatal(err)
	}
	// a minus b: -1.5 nats over 5 tokens a window.
	if !strings.Contains(string(md), "| adapter (served plan, no cache) | +0.0000 | +0.0000 | -0.3000 [-0.3000, -0.3000] |") {
		t.Fatalf("no versus row of -0.3 in:\n%s", md)
	}
	if _, stderr, err := run(t, "", "adapt", "cache", "--from-json", a, "--versus", none, "--out", out); err == nil || !strings.Contains(stderr, "per-window") {
		t.Fatalf("versus a run without per-window losses: %v\n%s", err, stderr)
	}
	if _, _, err := run(t, "", "adapt", "cache", "--versus", filepath.Join(dir, "missing.json.gz"), "--windows", a, "--out", out); err == nil {
		t.Fatal("a missing --versus file: no error")
	}
}
