package conformance

import (
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// TestCheckReports: Check collects Errorf, stops a part at its Fatalf and
// the whole check at a top-level one, and turns a panic into a failure.
func TestCheckReports(t *testing.T) {
	var reached []string
	c := Case{Name: "runner", Fn: func(t T, p *Pair) {
		t.Errorf("first %d", 1)
		Sub(t, "part", func(t T) {
			t.Fatalf("stop %s", "part")
			reached = append(reached, "after part's Fatalf")
		})
		Sub(t, "boom", func(t T) { panic("kernel exploded") })
		reached = append(reached, "after the parts")
		t.Fatalf("stop check")
		reached = append(reached, "after the check's Fatalf")
	}}
	r := Check(c, ref.New(), ref.New(), 7)
	if r.Name != "runner" || r.Seed != 7 {
		t.Errorf("result names %q seed %d", r.Name, r.Seed)
	}
	if strings.Join(reached, ",") != "after the parts" {
		t.Errorf("ran %q, want only the code after the parts", reached)
	}
	want := []string{"first 1", "part: stop part", "boom: panic: kernel exploded", "stop check"}
	if len(r.Failures) != len(want) {
		t.Fatalf("failures %q, want %d of them", r.Failures, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(r.Failures[i], w) {
			t.Errorf("failure %d = %q, want it to start %q", i, r.Failures[i], w)
		}
	}
	if r.Err() == nil || len(r.Logs) != 1 || !strings.Contains(r.Logs[0], "CHAMELEON_SEED=7") {
		t.Errorf("err %v, logs %q", r.Err(), r.Logs)
	}
	if ok := Check(Case{"pass", func(T, *Pair) {}}, ref.New(), ref.New(), 1); ok.Err() != nil {
		t.Errorf("an empty check failed: %v", ok.Err())
	}
}
