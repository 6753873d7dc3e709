package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// checkScoreVersus runs adapt score with --versus on saved windows (model
// ckpt, adapters a and b): an adapter against itself reads zero on every
// row, another file gives a paired row per domain and role of each split,
// and a --versus file that is not an adapter is refused, naming the flag.
func checkScoreVersus(t *testing.T, ckpt, a, b, windows string) {
	t.Helper()
	score := func(versus string) map[string]any {
		out := mustRun(t, "", "adapt", "score", "--model", ckpt, "--adapter", a, "--versus", versus, "--windows", windows,
			"--splits", "test,validation", "--batch", "2", "--bootstrap", "20", "--dtype", "f32", "--json")
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("adapt score --versus --json: %v\n%s", err, out)
		}
		return r
	}
	rowsOf := func(r map[string]any) []map[string]any {
		var rows []map[string]any
		for _, x := range r["versus_rows"].([]any) {
			rows = append(rows, x.(map[string]any))
		}
		return rows
	}
	self := rowsOf(score(a))
	if len(self) == 0 {
		t.Fatal("adapt score --versus itself: no rows")
	}
	for _, r := range self {
		d := r["diff"].(map[string]any)
		if d["mean"] != 0.0 || d["lo"] != 0.0 || d["hi"] != 0.0 {
			t.Errorf("adapt score --versus itself: row %v reads %v, want zero", r["name"], d)
		}
	}
	other := score(b)
	rows := rowsOf(other)
	if len(rows) != len(self) || other["versus"] == nil || other["versus"] == other["adapter"] {
		t.Errorf("adapt score --versus %s: %d rows (against itself %d), versus %v", b, len(rows), len(self), other["versus"])
	}
	var test, val bool
	for _, r := range rows {
		test = test || strings.HasPrefix(r["name"].(string), "test: ")
		val = val || strings.HasPrefix(r["name"].(string), "validation: ")
	}
	if !test || !val {
		t.Errorf("adapt score --versus: rows of test %v, validation %v", test, val)
	}
	if _, stderr, err := run(t, "", "adapt", "score", "--model", ckpt, "--adapter", a, "--versus", windows, "--windows", windows, "--splits", "test"); err == nil || !strings.Contains(stderr, "--versus") {
		t.Errorf("adapt score --versus a windows file: err %v, %q", err, stderr)
	}
}
