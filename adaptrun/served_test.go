package adaptrun

import (
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// TestScoreServed scores a trained hyper adapter's file through the
// inference path on the fixture's test and harm windows: base losses are
// the base model's own, a window the plan does not adapt scores as the
// base, the adaptation domains gain, and the per-role and mixed-stream rows
// pool exactly the windows they name.
func TestScoreServed(t *testing.T) {
	m, w, sets, base := prepared(t)
	hyper := Method{Name: "hyper", Kind: KindHyper, Rank: 2, Features: adapt.FeatureHidden, Hidden: []int{6}, Recluster: true}
	cfg := Config{Methods: []Method{hyper}, LRs: []float64{3e-2}, Seeds: 1, Primary: "hyper", Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 4, Alpha: 1}}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	_, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := firsts["hyper"].Adapter
	var svs []*Served
	for _, split := range []string{"test", "harm"} {
		sv, err := ScoreServed(m, a, split, w.Splits[split], ServedOpts{Prompt: w.Prompt, Batch: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, win := range w.Splits[split] {
			bs, err := m.Score([][]int32{win.Tokens}, []int{w.Prompt}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(bs[0].NLL-sv.Base.Loss[i]) > 1e-4*math.Max(1, bs[0].NLL) || bs[0].Tokens != sv.Base.N[i] {
				t.Fatalf("%s window %d: base %g over %d tokens, alone %g over %d", split, i, sv.Base.Loss[i], sv.Base.N[i], bs[0].NLL, bs[0].Tokens)
			}
			if !sv.Kept[i] && math.Abs(sv.Adapted.Loss[i]-sv.Base.Loss[i]) > 1e-4*math.Max(1, bs[0].NLL) {
				t.Fatalf("%s window %d: not adapted, yet %g against the base %g", split, i, sv.Adapted.Loss[i], sv.Base.Loss[i])
			}
		}
		svs = append(svs, sv)
	}
	rows := svs[0].Rows(w.Order, w.Roles, 50)
	var adaptRow *ServedRow
	for i := range rows {
		if rows[i].Name == "all "+RoleAdapt {
			adaptRow = &rows[i]
		}
	}
	if adaptRow == nil || adaptRow.Windows != len(w.Splits["test"]) || !(adaptRow.Diff.Mean < -0.05) {
		t.Fatalf("the adaptation domains' row: %+v (want every test window and a gain)", adaptRow)
	}
	mixed := MixedRow(50, svs...)
	var sa, sb float64
	var n int
	for _, sv := range svs {
		for i := range sv.Base.Loss {
			sa, sb, n = sa+sv.Adapted.Loss[i], sb+sv.Base.Loss[i], n+sv.Adapted.N[i]
		}
	}
	if mixed.Windows != len(w.Splits["test"])+len(w.Splits["harm"]) || math.Abs(mixed.Diff.Mean-(sa-sb)/float64(n)) > 1e-12 {
		t.Fatalf("mixed stream: %+v, want %d windows and %+.6f nats/token", mixed, len(w.Splits["test"])+len(w.Splits["harm"]), (sa-sb)/float64(n))
	}
	checkServedCache(t, m.Cfg.NEmbd, m.Cfg.VocabSize, w, svs, mixed, func() *Served {
		val, err := ScoreServed(m, a, "validation", w.Splits["validation"], ServedOpts{Prompt: w.Prompt, Batch: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return val
	})
}

// checkServedCache checks ScoreServed's per-position losses (c: model
// width, v: vocabulary) and runs the token cache's evaluation on them.
func checkServedCache(t *testing.T, c, v int, w *Windows, svs []*Served, mixed ServedRow, score func() *Served) {
	t.Helper()
	// The per-position losses the token cache reads are the ones the
	// figures sum, and the cache's evaluation runs on them: its adapter row
	// is the mixed stream above, and no row whose weights were chosen on
	// its own prompts is far worse than the base model (the shuffled
	// control borrows another cluster's and may be).
	for _, sv := range svs {
		for i := range sv.Tokens {
			sum := 0.0
			for _, l := range sv.AdaptedTok[i][w.Prompt-1:] {
				sum += float64(l)
			}
			if sum != sv.Adapted.Loss[i] || len(sv.BaseTok[i]) != len(sv.Tokens[i])-1 || len(sv.Features[i]) != c {
				t.Fatalf("%s window %d: per-position losses do not add up to the window's (%g, %g) or lengths are off", sv.Split, i, sum, sv.Adapted.Loss[i])
			}
		}
	}
	val := score()
	uni := make([]float64, v)
	for i := range uni {
		uni[i] = 1 / float64(len(uni))
	}
	cr, err := EvalCache(val, svs[0], svs[1], w.Roles, w.Order, CacheOpts{Prior: uni, Betas: []float64{1}, Batch: 4, Seed: 1, Bootstrap: 20})
	if err != nil {
		t.Fatal(err)
	}
	last := cr.Streams[len(cr.Streams)-1]
	if len(cr.Streams) != 3 || math.Abs(last.Rows[0].Diff.Mean-mixed.Diff.Mean) > 1e-12 {
		t.Fatalf("cache streams %d; its adapter row %+v, want the mixed stream's %+v", len(cr.Streams), last.Rows[0].Diff, mixed.Diff)
	}
	for _, r := range last.Rows {
		if math.IsNaN(r.Diff.Mean) || (r.Name != cacheVariants[4].name && r.Diff.Mean > 0.05) {
			t.Fatalf("cache row %q: %+v", r.Name, r.Diff)
		}
	}
}

// TestGatedLoRAServedMatchesBench: a LoRA trained with Features and written
// by TrainOne (training centroids, gate, self-check in the file) scores
// through the inference path exactly as the benchmark's "gated and
// self-checked" row scores the same training from cached hidden states:
// the shipped form of the benchmark's control.
func TestGatedLoRAServedMatchesBench(t *testing.T) {
	m, w, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	lora := Method{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden}
	opts := TrainOpts{Batch: 4, Epochs: 4, Alpha: 1}
	cfg := Config{Methods: []Method{lora}, LRs: []float64{3e-2}, Seeds: 1, Primary: "auto", Bootstrap: 10, Opts: opts}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, _, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var row *Row
	for i := range res.Rows {
		if res.Rows[i].Grouping == GroupStaticChecked {
			row = &res.Rows[i]
		}
	}
	if row == nil {
		t.Fatal("no gated and self-checked LoRA row")
	}
	o := opts
	o.LR, o.Seed = 3e-2, 1
	tr, err := TrainOne(tb, m, base, lora, sets.Train, sets.Fit, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Adapter
	if a.Gate() == nil || a.TrainingCentroids() == nil || !a.Meta.SelfCheck {
		t.Fatalf("TrainOne's LoRA file lacks its gate, centroids or self-check: %+v", a.Meta)
	}
	sv, err := ScoreServed(m, a, "test", w.Splits["test"], ServedOpts{Prompt: w.Prompt, Batch: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i, l := range sv.Adapted.Loss {
		want := row.Test[0].Loss[i]
		if !sameLoss(l, want) {
			t.Fatalf("test window %d: served %g, the benchmark's gated and self-checked row %g", i, l, want)
		}
		if sv.Kept[i] {
			kept++
		}
	}
	if kept == 0 {
		t.Fatal("the gated LoRA adapted no test window: the comparison says nothing")
	}
	t.Logf("kept %d of %d test windows", kept, len(sv.Kept))
}
