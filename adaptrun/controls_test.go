package adaptrun

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// TestControlsReplayBench: Controls on the file form of the benchmark's
// first-seed gated basis (its gate stored as adapt train stores it)
// reproduces, window by window, every test row the benchmark scored for
// that seed, and refuses a LoRA.
func TestControlsReplayBench(t *testing.T) {
	m, w, sets, base := prepared(t)
	cfg := Config{Methods: []Method{basisMethod}, LRs: []float64{3e-2}, Seeds: 1, Primary: basisMethod.Name, Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 3, Alpha: 1}}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := firsts[basisMethod.Name]
	if ok, err := GateAndSelfCheck(tr, sets.Train, nil, 4); !ok || err != nil {
		t.Fatalf("gate: %v %v", ok, err)
	}
	if g := tr.Adapter.Gate(); g == nil || g.Radius != tr.Radius {
		t.Fatalf("the stored gate's radius differs from the trained one's %g", tr.Radius)
	}
	e2 := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	c, err := Controls(e2, tr.Adapter, basisMethod.Name, sets.Test, 50, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rows) != len(ControlGroupings) || len(c.Pairs) != len(ControlPairs) {
		t.Fatalf("%d rows and %d pairs", len(c.Rows), len(c.Pairs))
	}
	for _, x := range res.Rows {
		if x.Role == RoleBase {
			if !slices.Equal(x.Test[0].Loss, c.Base.Loss) {
				t.Fatalf("base row: %v, the bench's %v", c.Base.Loss, x.Test[0].Loss)
			}
			continue
		}
		if x.Method != basisMethod.Name {
			continue
		}
		r := c.Row(x.Grouping)
		if r == nil {
			t.Fatalf("no controls row for the bench's grouping %q", x.Grouping)
		}
		if !slices.Equal(r.Scores.Loss, x.Test[0].Loss) || !slices.Equal(r.Scores.N, x.Test[0].N) {
			t.Fatalf("%s: losses %v, the bench's %v", r.Name, r.Scores.Loss, x.Test[0].Loss)
		}
	}
	if on, mean := c.Row(GroupOnline), c.Row(GroupMean); math.Abs(c.Pairs[0].Diff.Mean-(on.VsBase.Mean-mean.VsBase.Mean)) > 1e-12 {
		t.Fatalf("online minus mean %g, the rows' difference %g", c.Pairs[0].Diff.Mean, on.VsBase.Mean-mean.VsBase.Mean)
	}
	var md strings.Builder
	c.Markdown(&md)
	if !strings.Contains(md.String(), "control: mean update for all") {
		t.Fatalf("markdown:\n%s", md.String())
	}
	lora := &adapt.Adapter{Meta: adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: 1, Alpha: 1, Base: base}}
	if _, err := Controls(e2, lora, "lora", sets.Test, 10, nil); err == nil || !strings.Contains(err.Error(), "lora adapter") {
		t.Fatalf("a LoRA: %v", err)
	}
}
