package adaptrun

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// stageFixture is a model whose windows have prompts long enough to stage
// (23 predictions) and a self-checked hyper adapter with random weights
// large enough that its updates help some prompts and hurt others.
func stageFixture(t *testing.T) (*model.Model, *Windows, *adapt.Adapter) {
	t.Helper()
	cfg := model.Config{VocabSize: 24, NCtx: 40, NEmbd: 8, NHead: 2, NLayer: 1, LNEps: 1e-5}
	b := ref.New()
	wts, err := model.Upload(b, cfg, model.RandomInit(cfg, 3), gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: wts, B: b}
	rng := rand.New(rand.NewPCG(8, 9))
	win := func(dom int) Window {
		s := make([]int32, 33)
		for j := range s {
			s[j] = int32(8*dom + rng.IntN(8))
		}
		return Window{Tokens: s, Domain: []string{"low", "mid", "high"}[dom], Bytes: 32}
	}
	w := &Windows{Format: windowsFormat, T: 32, Prompt: 24, Vocab: 24, Order: []string{"low", "mid", "high"},
		Roles:  map[string]string{"low": RoleAdapt, "mid": RoleAdapt, "high": RolePretrain},
		Splits: map[string][]Window{}}
	for i := range 16 {
		w.Splits["validation"] = append(w.Splits["validation"], win(i%2))
	}
	for range 8 {
		w.Splits["fit"] = append(w.Splits["fit"], win(2))
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: 3, Alpha: 1, Hidden: []int{5}, Features: adapt.FeatureHidden,
		Centroids: 2, SelfCheck: true, Base: base}
	a := &adapt.Adapter{Meta: meta, Tensors: randomTensors(meta.Spec(), rand.New(rand.NewPCG(5, 6)), 0.15)}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	return m, w, a
}

// TestChooseStagesPredictsServed: what the table says a rule does (windows
// kept, served change) is what the runtime does with that rule in the
// adapter file, on both splits; the fixture has rules that decide
// otherwise than one stage; the chosen rule is the cheapest within the
// tolerances; the file keeps it; FullCheck undoes the stages.
//
// (Over 80 lines: every rule served on both splits, then the choice, the
// file and the refusals, on one scoring of the fixture.)
func TestChooseStagesPredictsServed(t *testing.T) {
	m, w, a := stageFixture(t)
	o := StageOpts{Strides: []int{2, 3}, Margins: []float64{0, 0.05, 0.3}, TolVal: 0.02, TolFit: 0.02, Batch: 4}
	c, err := ChooseStages(m, a, w, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	differs := false
	for _, r := range c.Rules {
		differs = differs || r.Validation.Agree < r.Validation.Open || r.Fit.Agree < r.Fit.Open
	}
	if !differs || c.Full.Validation.Kept == 0 || c.Full.Validation.Kept == c.Full.Validation.Open {
		t.Fatalf("a fixture that exercises nothing: one stage keeps %d of %d; every rule agrees with it: %v", c.Full.Validation.Kept, c.Full.Validation.Open, !differs)
	}
	for _, r := range append([]StageRule{c.Full}, c.Rules...) {
		staged, err := WithStages(a, adapt.CheckStages{Stride: r.Stride, Margin: r.Margin})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []struct {
			split string
			want  StageSplit
		}{{"validation", r.Validation}, {"fit", r.Fit}} {
			sv, err := ScoreServed(m, staged, x.split, w.Splits[x.split], ServedOpts{Prompt: w.Prompt, Batch: o.Batch}, nil)
			if err != nil {
				t.Fatal(err)
			}
			kept, d, n := 0, 0.0, 0
			for i, k := range sv.Kept {
				if k {
					kept++
				}
				d, n = d+sv.Adapted.Loss[i]-sv.Base.Loss[i], n+sv.Base.N[i]
			}
			if kept != x.want.Kept || math.Abs(d/float64(n)-x.want.Change) > 1e-9 {
				t.Fatalf("stride %d margin %g, %s: served keeps %d (%+.6f nats/token), the table says %d (%+.6f)",
					r.Stride, r.Margin, x.split, kept, d/float64(n), x.want.Kept, x.want.Change)
			}
		}
	}
	// A staged file scored with FullCheck decides as the one-stage check.
	stagedAny, err := WithStages(a, adapt.CheckStages{Stride: 2, Margin: 0})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ScoreServed(m, stagedAny, "validation", w.Splits["validation"], ServedOpts{Prompt: w.Prompt, Batch: o.Batch, FullCheck: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if kept := countTrue(sv.Kept); kept != c.Full.Validation.Kept {
		t.Fatalf("a staged file with FullCheck keeps %d validation windows, one stage %d", kept, c.Full.Validation.Kept)
	}
	best := -1
	for k, r := range c.Rules {
		if r.Validation.Change <= c.Full.Validation.Change+o.TolVal && r.Fit.Change <= c.Full.Fit.Change+o.TolFit && r.Validation.Scored < r.Validation.Checked &&
			(best < 0 || r.Validation.Cost() < c.Rules[best].Validation.Cost()) {
			best = k
		}
	}
	if best < 0 || c.Chosen != best {
		t.Fatalf("chosen rule %d, the cheapest within the tolerances %d", c.Chosen, best)
	}
	staged, err := WithStages(a, c.Stages())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "staged.safetensors")
	if err := adapt.Save(path, staged); err != nil {
		t.Fatal(err)
	}
	back, err := adapt.Load(path, a.Meta.Base)
	if err != nil {
		t.Fatal(err)
	}
	if got := (adapt.CheckStages{Stride: back.Meta.CheckStride, Margin: back.Meta.CheckMargin}); got != c.Stages() {
		t.Fatalf("the file's rule %+v, chosen %+v", got, c.Stages())
	}
	jpath, png := filepath.Join(t.TempDir(), "stages.json"), filepath.Join(t.TempDir(), "stages.png")
	if err := c.WriteJSON(jpath); err != nil {
		t.Fatal(err)
	}
	back2, err := ReadStageChoice(jpath)
	if err != nil || back2.Chosen != c.Chosen || len(back2.Rules) != len(c.Rules) || back2.Rules[c.Chosen] != c.Rules[c.Chosen] || back2.Full != c.Full {
		t.Fatalf("stages.json round trip: %v, chosen %d of %d rules", err, back2.Chosen, len(back2.Rules))
	}
	if err := c.WritePNG(png); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Fatalf("stages.png: %v", err)
	}
	var md strings.Builder
	c.Markdown(&md)
	t.Log("\n" + md.String())
	if !strings.Contains(md.String(), "(chosen)") {
		t.Fatalf("markdown without the chosen rule:\n%s", md.String())
	}
	unchecked := *a
	unchecked.Meta.SelfCheck = false
	if _, err := ChooseStages(m, &unchecked, w, o, nil); err == nil {
		t.Fatal("an adapter without a self-check was staged")
	}
	if _, err := WithStages(&unchecked, adapt.CheckStages{Stride: 2}); err == nil {
		t.Fatal("WithStages staged an adapter without a self-check")
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
