package main

import (
	"bytes"
	"compress/gzip"
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

// adapt cache compares the windows' vocabulary with the model's before it
// makes the prior's vocabulary-sized table (a windows file may state up to
// 2^31-1 tokens, 16 GB of prior).
func TestAdaptCacheVocabBeforePrior(t *testing.T) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write([]byte(`{"format":"chameleon-adapt-windows/1","t":3,"prompt":1,"roles":{"a":"adapt"},"order":["a"],"vocab":5,` +
		`"splits":{"test":[{"tokens":[1,2,3,4],"domain":"a","bytes":3}]}}`))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	w := filepath.Join(t.TempDir(), "w.json.gz")
	if err := os.WriteFile(w, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "", "adapt", "cache", "--adapter", "default", "--windows", w, "--out", t.TempDir(), "--dtype", "f32")
	if err == nil || !strings.Contains(stderr, "vocabulary of 5 tokens") || strings.Contains(stderr, "prior is uniform") {
		t.Errorf("adapt cache on windows of another vocabulary: err %v, stderr %q", err, stderr)
	}
}
