package adaptrun

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// sameLoss says whether a window's loss served through the inference path
// matches the benchmark's for it (relative 1e-4: the two paths run the same
// forwards in other batches).
func sameLoss(got, want float64) bool {
	return math.Abs(got-want) <= 1e-4*math.Max(1, math.Abs(want))
}

// TestSharedGateServedMatchesBench: a gated basis of hidden features whose
// file stores the benchmark's shared embed+hidden gate (GateFor with a
// kind: adapt's Gate.Features) scores every test window through the
// inference path as the benchmark's "gated and self-checked, behind the
// shared gate" row scores the same training from cached hidden states; and
// the controls read that gate from the file.
//
// (Over 80 lines: one training, then the file scored three ways against
// the same row: served, by the gate alone, by the controls' evaluator.)
func TestSharedGateServedMatchesBench(t *testing.T) {
	m, w, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	cfg := Config{Methods: []Method{basisMethod}, LRs: []float64{3e-2}, Seeds: 1, Primary: basisMethod.Name, Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 3, Alpha: 1}, SharedGates: []string{adapt.FeatureBoth}}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1, Train: sets.Train, Fit: sets.Fit}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var row *Row
	for i := range res.Rows {
		if r := &res.Rows[i]; r.Grouping == GroupChecked && r.Gate == adapt.FeatureBoth {
			row = r
		}
	}
	tr := firsts[basisMethod.Name]
	if row == nil || tr == nil {
		t.Fatal("no checked row behind the shared gate, or no first-seed basis")
	}
	if _, err := GateFor(tr.Adapter, sets.Train, nil, 4, adapt.FeatureBoth); err == nil {
		t.Error("a gate of its own features without the pretraining windows was made")
	}
	g, err := GateFor(tr.Adapter, sets.Train, sets.Fit, 4, adapt.FeatureBoth)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Adapter.SetGate(g); err != nil {
		t.Fatal(err)
	}
	tr.Adapter.Meta.SelfCheck = true
	path := filepath.Join(t.TempDir(), "shared-gate.safetensors")
	if err := adapt.Save(path, tr.Adapter); err != nil {
		t.Fatal(err)
	}
	a, err := adapt.Load(path, base)
	if err != nil {
		t.Fatal(err)
	}
	if a.Meta.GateFeatures != adapt.FeatureBoth || a.Meta.ClusterRadius <= 0 {
		t.Fatalf("the file's gate: %+v", a.Meta)
	}
	sv, err := ScoreServed(m, a, "test", w.Splits["test"], ServedOpts{Prompt: w.Prompt, Batch: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, gated := 0, 0
	for i, l := range sv.Adapted.Loss {
		want := row.Test[0].Loss[i]
		if !sameLoss(l, want) {
			t.Fatalf("test window %d: served %g, the benchmark's row behind the shared gate %g", i, l, want)
		}
		if sv.Kept[i] {
			kept++
		}
		x := sets.Test.Feature(adapt.FeatureBoth)
		d := len(x) / len(sets.Test.Windows)
		if g.Closed(nil, x[i*d:(i+1)*d]) {
			gated++
			if sv.Kept[i] {
				t.Fatalf("test window %d: the gate closes on it and the served plan adapted it", i)
			}
		}
	}
	if kept == 0 || gated == 0 {
		t.Fatalf("%d test windows adapted, %d closed by the gate: the comparison says little", kept, gated)
	}
	// The controls read the file's gate as the evaluator's shared gate.
	ce := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	ft, err := fileTrained(ce, a, "file")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ce.Score(ft, sets.Test, GroupChecked, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range cs.Loss {
		if want := row.Test[0].Loss[i]; !sameLoss(l, want) {
			t.Fatalf("test window %d: the file scored by the evaluator %g, the benchmark's row %g", i, l, want)
		}
	}
}
