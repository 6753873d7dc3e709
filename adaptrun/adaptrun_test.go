package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

func TestPairedBootstrap(t *testing.T) {
	n := 200
	a, b := Scores{Loss: make([]float64, n), N: make([]int, n)}, Scores{Loss: make([]float64, n), N: make([]int, n)}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		a.N[i], b.N[i] = 10, 10
		b.Loss[i] = 10 * (3 + rng.NormFloat64())
		a.Loss[i] = b.Loss[i] - 10*(0.05+0.02*rng.NormFloat64()) // a is better by ~0.05 nats/token
	}
	iv := PairedBootstrap(a, b, 2000, 1)
	if math.Abs(iv.Mean+0.05) > 0.01 || !(iv.Lo < iv.Mean && iv.Mean < iv.Hi) || !iv.ExcludesZero() || iv.Hi >= 0 {
		t.Fatalf("a better by 0.05: interval %+v", iv)
	}
	same := PairedBootstrap(b, b, 500, 1)
	if same.Mean != 0 || same.Lo != 0 || same.Hi != 0 || same.ExcludesZero() {
		t.Fatalf("identical scores: interval %+v", same)
	}
	// Noise alone (a and b differ by zero-mean noise) must not exclude zero.
	for i := range n {
		a.Loss[i] = b.Loss[i] + 10*0.5*rng.NormFloat64()
	}
	if noise := PairedBootstrap(a, b, 2000, 3); noise.ExcludesZero() && math.Abs(noise.Mean) < 0.02 {
		t.Fatalf("zero-mean noise: interval %+v", noise)
	}
}

func TestGated(t *testing.T) {
	cents := func(rows ...[]float32) *cluster.Centroids {
		c := &cluster.Centroids{K: len(rows), C: 2}
		for _, r := range rows {
			c.Data = append(c.Data, r...)
		}
		return c
	}
	tr := &Trained{Cents: cents([]float32{0, 0}, []float32{4, 0}), Radius: 1}
	gc := [2]*cluster.Centroids{cents([]float32{0, 0}, []float32{4, 0}), cents([]float32{0, 3})}
	for _, c := range []struct {
		x       []float32
		noFit   bool
		want    bool
		because string
	}{
		{[]float32{0.5, 0}, false, false, "near an adaptation centroid"},
		{[]float32{2, 0}, false, true, "outside the radius"},
		{[]float32{0, 0.9}, false, false, "within the radius, nearer the adaptation side"},
		{[]float32{0, 0.9}, true, false, "no pretraining centroids"},
		{[]float32{0.3, 0.95}, true, false, "within the radius without the pretraining half"},
	} {
		g := gc
		if c.noFit {
			g = [2]*cluster.Centroids{}
		}
		if got := gated(tr, g, c.x); got != c.want {
			t.Errorf("%v (%s): gated %v, want %v", c.x, c.because, got, c.want)
		}
	}
	// Within the radius but nearer the pretraining side: gated.
	tr.Radius = 10
	if !gated(tr, gc, []float32{0, 2}) || gated(tr, [2]*cluster.Centroids{}, []float32{0, 2}) {
		t.Error("a window nearer the pretraining centroids must be gated only when they are given")
	}
}

func TestFitScale(t *testing.T) {
	s, l, err := fitScale(func(x float32) (float64, error) { return (float64(x) - 1.3) * (float64(x) - 1.3), nil })
	if err != nil || math.Abs(float64(s)-1.3) > 1e-3 || l > 1e-6 {
		t.Fatalf("minimum at 1.3: got scale %g loss %g err %v", s, l, err)
	}
}

// fixture is a tiny random model on the reference backend and windows of
// three synthetic domains: two adaptation domains whose next tokens follow
// different rules, and a held-out one with tokens of its own.
func fixture(t *testing.T) (*model.Model, *Windows) {
	t.Helper()
	return fixtureOn(t, ref.New())
}

// fixtureOn is fixture's model on backend b (the same weights and windows
// on every backend).
func fixtureOn(t *testing.T, b gpu.Backend) (*model.Model, *Windows) {
	t.Helper()
	cfg := model.Config{VocabSize: 24, NCtx: 16, NEmbd: 8, NHead: 2, NLayer: 1, LNEps: 1e-5}
	w, err := model.Upload(b, cfg, model.RandomInit(cfg, 3), gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: b}
	rng := rand.New(rand.NewPCG(4, 5))
	win := func(dom int) Window {
		s := make([]int32, 13)
		s[0] = int32(rng.IntN(8) + 8*dom)
		for j := 1; j < len(s); j++ {
			switch dom {
			case 0: // counts up in 0..7
				s[j] = (s[j-1] + 1) % 8
			case 1: // counts down in 8..15
				s[j] = 8 + (s[j-1]-8+7)%8
			default: // random in 16..23
				s[j] = int32(16 + rng.IntN(8))
			}
		}
		return Window{Tokens: s, Domain: []string{"up", "down", "noise"}[dom], Bytes: 12}
	}
	ws := &Windows{Format: windowsFormat, T: 12, Prompt: 4, Vocab: 24, Order: []string{"up", "down", "noise"},
		Roles:  map[string]string{"up": RoleAdapt, "down": RoleAdapt, "noise": RoleHeldOut},
		Splits: map[string][]Window{}}
	for _, sp := range []struct {
		split string
		n     int
	}{{"train", 24}, {"validation", 8}, {"test", 12}} { // a fixed order: the same windows every call
		for i := range sp.n {
			ws.Splits[sp.split] = append(ws.Splits[sp.split], win(i%2))
		}
	}
	for range 6 {
		ws.Splits["harm"] = append(ws.Splits["harm"], win(2))
	}
	for range 6 {
		ws.Splits["fit"] = append(ws.Splits["fit"], win(2))
	}
	return m, ws
}

func TestWindowsRoundTrip(t *testing.T) {
	_, w := fixture(t)
	path := filepath.Join(t.TempDir(), "w.json.gz")
	if err := w.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadWindows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Splits["train"]) != 24 || got.Splits["test"][3].Tokens[5] != w.Splits["test"][3].Tokens[5] || got.Roles["noise"] != RoleHeldOut {
		t.Fatalf("round trip changed the windows")
	}
	w.Splits["test"][0].Tokens[2] = 99 // outside the vocabulary
	if err := w.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWindows(path); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Fatalf("a token outside the vocabulary: err = %v", err)
	}
	if err := os.WriteFile(path, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWindows(path); err == nil {
		t.Fatal("a corrupt file loaded")
	}
}

// TestRunTiny runs the whole benchmark on the fixture: every method and
// grouping, the report in all three forms, and checks that the oracle
// learnt its domains and that the gate keeps the held-out domain at the
// base model.
//
// (Over 80 lines: one benchmark run on the fixture, then each form of the
// report and each finding checked.)
func TestRunTiny(t *testing.T) {
	m, w, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	hyper := Method{Name: "hyper", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}, Recluster: true}
	cfg := Config{
		Methods: []Method{
			{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden},
			{Name: "experts", Kind: KindExperts, Rank: 2, Features: adapt.FeatureBoth},
			{Name: "table", Kind: KindTable, Rank: 2, Features: adapt.FeatureHidden, K: 2},
			hyper,
			{Name: "hybrid", Kind: KindHyper, Rank: 2, StaticRank: 2, Features: adapt.FeatureHidden, Hidden: []int{4}, Recluster: true},
		},
		LRs: []float64{3e-2, 1e-1}, Seeds: 2, Primary: "hyper", Bootstrap: 100,
		Opts: TrainOpts{Batch: 4, Epochs: 4, Alpha: 1},
	}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// base, temperature, lora x3, experts x3, table x2, hyper x8, hybrid x8
	if len(res.Rows) != 26 {
		t.Fatalf("%d rows, want 26", len(res.Rows))
	}
	// The self-checked row keeps, window by window, the gated online loss
	// or the base model's.
	var onl, chk, bse, sta, sgt, sck *Row
	for i := range res.Rows {
		switch r := &res.Rows[i]; {
		case r.Method == "hyper" && r.Grouping == GroupOnline:
			onl = r
		case r.Method == "hyper" && r.Grouping == GroupChecked:
			chk = r
		case r.Method == "lora" && r.Grouping == GroupStatic:
			sta = r
		case r.Method == "lora" && r.Grouping == GroupStaticGated:
			sgt = r
		case r.Method == "lora" && r.Grouping == GroupStaticChecked:
			sck = r
		case r.Role == RoleBase:
			bse = r
		}
	}
	if onl == nil || chk == nil || sta == nil || sgt == nil || sck == nil {
		t.Fatal("no online, self-checked, or static, gated and checked LoRA row")
	}
	// The self-checked rows keep, window by window, the loss of the gated
	// row (hyper: online; LoRA: gated) or the base model's.
	// Which one is what the row's recorded prompt-loss differences say:
	// the gated row's where the update lowered the prompt's loss.
	for _, p := range [][2]*Row{{chk, onl}, {sck, sgt}} {
		if len(p[0].Check) != len(p[0].Test) || len(p[0].HarmCheck) != len(p[0].Harm) || len(p[1].Check) != 0 {
			t.Fatalf("%s: %d test and %d harm self-checks recorded for %d seeds (the gated row: %d)", p[0].Name, len(p[0].Check), len(p[0].HarmCheck), len(p[0].Test), len(p[1].Check))
		}
		kept := 0
		for s := range p[0].Test {
			for _, x := range []struct{ got, gated, base, check Scores }{
				{p[0].Test[s], p[1].Test[s], bse.Test[0], p[0].Check[s]},
				{p[0].Harm[s], p[1].Harm[s], bse.Harm[0], p[0].HarmCheck[s]},
			} {
				for i, l := range x.got.Loss {
					want := x.base.Loss[i]
					if x.check.Loss[i] < 0 {
						want = x.gated.Loss[i]
						kept++
					}
					if l != want || x.check.N[i] != w.Prompt-1 {
						t.Fatalf("%s, seed %d window %d: loss %g, want %g (prompt difference %g over %d tokens)", p[0].Name, s, i, l, want, x.check.Loss[i], x.check.N[i])
					}
				}
			}
		}
		if kept == 0 {
			t.Fatalf("%s: the self-check kept no update: the test shows nothing", p[0].Name)
		}
	}
	// The gated LoRA keeps the base model on the held-out windows (random
	// tokens far from its training centroids); ungated, it moves them.
	for i, l := range sgt.Harm[0].Loss {
		if l != bse.Harm[0].Loss[i] {
			t.Fatalf("gated LoRA, held-out window %d: loss %g, base %g", i, l, bse.Harm[0].Loss[i])
		}
	}
	if slices.Equal(sta.Harm[0].Loss, bse.Harm[0].Loss) {
		t.Fatal("the ungated LoRA left every held-out window at the base model's loss")
	}
	if firsts["hyper"] == nil || firsts["hyper"].Adapter.Meta.Features != adapt.FeatureBoth || firsts["hyper"].Adapter.Meta.Centroids == 0 {
		t.Fatalf("the first hyper adapter is missing its features or centroids")
	}
	// The recorded self-check evidence (the bench's evaluator scores the
	// base model's prompts once per set, for every row and seed) is what
	// an evaluator that has seen nothing computes for that adapter.
	fresh := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	for _, x := range []struct {
		s    *Set
		want Scores
	}{{sets.Test, chk.Check[0]}, {sets.Harm, chk.HarmCheck[0]}} {
		d, err := fresh.checkDiffs(firsts["hyper"], x.s, GroupChecked)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Loss, x.want.Loss) || !slices.Equal(d.N, x.want.N) {
			t.Fatalf("self-check evidence of the first hyper adapter: recorded %v, recomputed %v", x.want.Loss, d.Loss)
		}
	}
	checkSelected(t, fresh, res, sets.Test, sets.Harm, firsts["experts"])
	sum := res.Summarise()
	byName := map[string]RowSummary{}
	for _, r := range sum.Rows {
		byName[r.Name] = r
	}
	baseLoss := byName["base model"].Loss
	if o := byName["experts, oracle (domain labels)"]; !(o.Loss < baseLoss-0.05) {
		t.Fatalf("the oracle experts did not learn the two counting rules: %.4f vs base %.4f", o.Loss, baseLoss)
	}
	online := byName["hyper, online (nearest training centroid)"]
	if !(online.Loss < baseLoss-0.05) {
		t.Fatalf("the hyper-network did not adapt: %.4f vs base %.4f", online.Loss, baseLoss)
	}
	if len(online.HarmPct) != 1 || math.Abs(online.HarmPct[0]) > 1e-9 {
		t.Fatalf("held-out windows of unseen tokens should be gated to the base model: harm %v%%", online.HarmPct)
	}
	// The mixed stream: adaptation test windows and held-out ones together.
	// Gated, the held-out half is unchanged, so the mixed gain is the
	// adaptation gain scaled by its share of the scored tokens.
	if online.Mixed == nil || byName["base model"].Mixed != nil {
		t.Fatalf("mixed-stream interval: online %v, base %v (want one for the online row, none for the base)", online.Mixed, byName["base model"].Mixed)
	}
	var nt, nh int
	for i := range bse.Test[0].N {
		nt += bse.Test[0].N[i]
	}
	for i := range bse.Harm[0].N {
		nh += bse.Harm[0].N[i]
	}
	if want := (online.Loss - baseLoss) * float64(nt) / float64(nt+nh); math.Abs(online.Mixed.Mean-want) > 1e-9 {
		t.Fatalf("mixed stream: %+.6f nats/token, want %+.6f", online.Mixed.Mean, want)
	}
	// The hybrid (static pair + generated update) adapts, and its rows
	// count the static pair's parameters and FLOPs.
	hy := byName["hybrid, online (nearest training centroid)"]
	if !(hy.Loss < baseLoss-0.05) {
		t.Fatalf("the hybrid did not adapt: %.4f vs base %.4f", hy.Loss, baseLoss)
	}
	for _, r := range res.Rows {
		if r.Method == "hybrid" {
			c, v := base.Config.NEmbd, base.Config.VocabSize
			net := cfg.Methods[4]
			net.StaticRank = 0
			if want := net.Params(c, v, 1) + 2*(c+v); r.Params != want || r.FLOPsPerToken < float64(4*2*(c+v)) {
				t.Fatalf("%s: %d parameters, %g FLOPs a token: want %d and at least %d", r.Name, r.Params, r.FLOPsPerToken, want, 4*2*(c+v))
			}
		}
	}
	dir := t.TempDir()
	md := res.Markdown(sum)
	for _, want := range []string{"| base model |", "oracle", "Targets:", "control: shuffled clusters", "intervals below zero"} {
		if !strings.Contains(md, want) {
			t.Fatalf("markdown lacks %q:\n%s", want, md)
		}
	}
	if err := res.WriteJSON(filepath.Join(dir, "b.json"), sum); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(filepath.Join(dir, "b.json"))
	if err != nil || len(back.Rows) != len(res.Rows) || back.Rows[3].Test[1].Loss[2] != res.Rows[3].Test[1].Loss[2] {
		t.Fatalf("JSON round trip: %v", err)
	}
	if err := res.WritePNG(filepath.Join(dir, "b.png"), sum); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "b.png")); err != nil || fi.Size() < 1000 {
		t.Fatalf("PNG: %v", err)
	}
}

// TestGateCurveReplaysOnline replays the benchmark's own gate (the 0.99
// quantile with the pretraining half) on its result: it must reproduce
// the online row's first-seed figures, and the widest radius without the
// pretraining half the ungated row's.
func TestGateCurveReplaysOnline(t *testing.T) {
	m, w, sets, base := prepared(t)
	hyper := Method{Name: "hyper", Kind: KindHyper, Rank: 2, Features: adapt.FeatureHidden, Hidden: []int{6}, Recluster: true}
	cfg := Config{Methods: []Method{{Name: "experts", Kind: KindExperts, Rank: 2, Features: adapt.FeatureHidden}, hyper},
		LRs: []float64{3e-2}, Seeds: 1, Primary: "hyper", Bootstrap: 10, Opts: TrainOpts{Batch: 4, Epochs: 3, Alpha: 1}}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := GateCurve(res, "hyper", firsts["hyper"].Adapter, sets, 4, []float64{GateQuantile, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 4 {
		t.Fatalf("%d points, want 4", len(pts))
	}
	// The self-check, on the prompts' hidden states: the held-out windows
	// are random tokens, whose prompts no counting rule helps.
	psets, err := PrepareSets(m, w.PromptsOnly(), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	spts, err := GateCurve(res, "hyper", firsts["hyper"].Adapter, psets, 4, []float64{1}, e)
	if err != nil {
		t.Fatal(err)
	}
	var alone *GatePoint
	for i := range spts {
		if spts[i].SelfCheck && !spts[i].Pretrain {
			alone = &spts[i]
		}
	}
	if len(spts) != 4 || alone == nil {
		t.Fatalf("self-check points: %+v", spts)
	}
	if !(alone.OpenHarm < 0.5) || !(alone.OpenTest > 0.5) {
		t.Errorf("the self-check adapted %.0f%% of the held-out noise windows and %.0f%% of the adaptation ones", 100*alone.OpenHarm, 100*alone.OpenTest)
	}
	sum := res.Summarise()
	row := func(name string) RowSummary {
		for _, r := range sum.Rows {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no row %q", name)
		return RowSummary{}
	}
	online, ungated := row("hyper, online (nearest training centroid)"), row("hyper, online without the gate")
	var same, wide *GatePoint
	for i := range pts {
		if pts[i].Pretrain && pts[i].Quantile == GateQuantile {
			same = &pts[i]
		}
		if !pts[i].Pretrain && pts[i].Quantile == 1 {
			wide = &pts[i]
		}
	}
	if same == nil || wide == nil {
		t.Fatalf("points %+v", pts)
	}
	if math.Abs(same.GapClosed-online.GapClosed) > 1e-9 || math.Abs(same.HarmHeld-online.HarmRolePct[1]) > 1e-9 {
		t.Errorf("replayed gate: gap %.6f harm %.4f%%; the online row: gap %.6f harm %.4f%%", same.GapClosed, same.HarmHeld, online.GapClosed, online.HarmRolePct[1])
	}
	if wide.OpenTest != 1 || math.Abs(wide.GapClosed-ungated.GapClosed) > 1e-9 {
		t.Errorf("the widest radius: %.0f%% open, gap %.6f; the ungated row: gap %.6f", 100*wide.OpenTest, wide.GapClosed, ungated.GapClosed)
	}
	if md := GateCurveMarkdown("hyper", pts); !strings.Contains(md, "| 0.99 |") {
		t.Errorf("markdown:\n%s", md)
	}
	if err := WriteGateCurvePNG(filepath.Join(t.TempDir(), "g.png"), pts); err != nil {
		t.Fatal(err)
	}
}

// prepared is the fixture after the base pass: the model, its windows,
// every split's set and the adapters' base.
func prepared(t *testing.T) (*model.Model, *Windows, Sets, adapt.Base) {
	t.Helper()
	m, w := fixture(t)
	sets, err := PrepareSets(m, w, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, w, sets, base
}

// TestSharedGate scores a LoRA and a hyper-network, each with features of
// its own, behind one gate in a third feature space: every gated row is
// there again, and window by window it keeps the base model exactly where
// that gate (computed here from the windows alone) closes and its ungated
// update's loss elsewhere, so the two methods' gated rows differ only in
// their updates.
func TestSharedGate(t *testing.T) {
	m, w, sets, base := prepared(t)
	cfg := Config{
		Methods: []Method{
			{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden},
			{Name: "hyper", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}, Recluster: true},
		},
		LRs: []float64{3e-2}, Seeds: 1, Primary: "hyper", Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 3, Alpha: 1}, SharedGates: []string{adapt.FeatureEmbed},
	}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, _, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.SharedGate != "" {
		t.Fatalf("the evaluator kept the shared gate %q after the run", e.SharedGate)
	}
	row := func(method, grouping, gate string) *Row {
		t.Helper()
		for i, r := range res.Rows {
			if r.Method == method && r.Grouping == grouping && r.Gate == gate {
				return &res.Rows[i]
			}
		}
		t.Fatalf("no %s row %s behind gate %q", method, grouping, gate)
		return nil
	}
	// The gate from the windows alone: k-means of each side at the batch's
	// granularity, the radius around the adaptation side's centroids.
	gc, err := gateCentroids(adapt.FeatureEmbed, sets.Train, sets.Fit, 4)
	if err != nil {
		t.Fatal(err)
	}
	g := adapt.Gate{Radius: radius(gc[0], sets.Train.Feature(adapt.FeatureEmbed), GateQuantile), Adapt: gc[0], Pretrain: gc[1]}
	closed := func(s *Set, i int) bool {
		return g.Closed(gc[0], s.Feature(adapt.FeatureEmbed)[i*s.C:(i+1)*s.C])
	}
	bse := res.Rows[0]
	nClosed := 0
	for _, c := range []struct{ gated, ungated *Row }{
		{row("lora", GroupStaticGated, adapt.FeatureEmbed), row("lora", GroupStatic, "")},
		{row("hyper", GroupOnline, adapt.FeatureEmbed), row("hyper", GroupUngated, "")},
	} {
		if c.gated.Name == row(c.gated.Method, c.gated.Grouping, "").Name {
			t.Errorf("%s: the shared gate's row has its own gate's name", c.gated.Name)
		}
		for _, x := range []struct {
			s                  *Set
			got, ungated, base Scores
		}{{sets.Test, c.gated.Test[0], c.ungated.Test[0], bse.Test[0]}, {sets.Harm, c.gated.Harm[0], c.ungated.Harm[0], bse.Harm[0]}} {
			for i, l := range x.got.Loss {
				want := x.ungated.Loss[i]
				if closed(x.s, i) {
					want = x.base.Loss[i]
					nClosed++
				}
				if l != want {
					t.Fatalf("%s, %s window %d: loss %g, want %g (gate closed: %v)", c.gated.Name, x.s.Name, i, l, want, closed(x.s, i))
				}
			}
		}
	}
	if nClosed == 0 {
		t.Fatal("the shared gate closed no window: the test shows nothing")
	}
	for _, r := range []*Row{row("lora", GroupStaticChecked, adapt.FeatureEmbed), row("hyper", GroupChecked, adapt.FeatureEmbed)} {
		for i, l := range r.Test[0].Loss {
			if closed(sets.Test, i) && l != bse.Test[0].Loss[i] {
				t.Fatalf("%s, window %d: the gate closed it, yet loss %g is not the base's %g", r.Name, i, l, bse.Test[0].Loss[i])
			}
		}
	}
}

// TestRowMatches: GROUPING picks the row behind its own gate only,
// GROUPING@FEATURES the row behind that shared gate only.
func TestRowMatches(t *testing.T) {
	own := Row{Grouping: GroupChecked}
	shared := Row{Grouping: GroupChecked, Gate: adapt.FeatureHidden}
	for _, c := range []struct {
		r    Row
		spec string
		want bool
	}{
		{own, "online-checked", true}, {own, "online-checked@hidden", false},
		{shared, "online-checked", false}, {shared, "online-checked@hidden", true},
		{shared, "online-checked@embed", false}, {shared, "online@hidden", false},
	} {
		if got := c.r.Matches(c.spec); got != c.want {
			t.Errorf("row %s behind %q matches %q: %v, want %v", c.r.Grouping, c.r.Gate, c.spec, got, c.want)
		}
	}
}

// TestEpochGrid chooses the epochs with the rate on validation: the row
// names the pair of least validation loss, its first seed's validation is
// that of a LoRA trained here at those epochs, and its second seed is the
// LoRA trained at the chosen epochs, not at the others.
func TestEpochGrid(t *testing.T) {
	m, w, sets, base := prepared(t)
	lora := Method{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden}
	grid := []int{1, 4}
	cfg := Config{Methods: []Method{lora}, LRs: []float64{1e-2, 3e-2}, EpochGrid: grid, Seeds: 2, Primary: "hyper", Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 1, Alpha: 1}}
	tb := m.B.(gpu.TrainBackend)
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, _, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Rows[find(res.Rows, func(x Row) bool { return x.Method == "lora" && x.Grouping == GroupStatic })]
	if len(r.LRVal) != 4 {
		t.Fatalf("validation at %d grid points, want 4: %v", len(r.LRVal), r.LRVal)
	}
	bestKey := ""
	for k, v := range r.LRVal {
		if bestKey == "" || v < r.LRVal[bestKey] {
			bestKey = k
		}
	}
	if want := GridKey(r.LR, r.Epochs, grid); bestKey != want || r.Val != r.LRVal[want] {
		t.Fatalf("chose %s (validation %.5f), want the least: %s in %v", want, r.Val, bestKey, r.LRVal)
	}
	other := grid[0]
	if r.Epochs == other {
		other = grid[1]
	}
	trainAt := func(seed uint64, epochs int) *Trained {
		t.Helper()
		tr, err := Train(tb, m.W.Wte, base, lora, sets.Train, TrainOpts{Batch: 4, Epochs: epochs, Alpha: 1, LR: r.LR, Seed: seed}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	vs, err := e.Score(trainAt(1, r.Epochs), sets.Validation, GroupStatic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Mean(nil) != r.Val {
		t.Fatalf("first seed at %d epochs: validation %.6f here, %.6f in the row", r.Epochs, vs.Mean(nil), r.Val)
	}
	for _, c := range []struct {
		epochs int
		same   bool
	}{{r.Epochs, true}, {other, false}} {
		s2, err := e.Score(trainAt(2, c.epochs), sets.Test, GroupStatic, 1)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(s2.Loss, r.Test[1].Loss) != c.same {
			t.Fatalf("second seed: test losses equal to a LoRA trained at %d epochs: %v, want %v", c.epochs, !c.same, c.same)
		}
	}
	if md := res.Markdown(res.Summarise()); !strings.Contains(md, fmt.Sprintf("%g, %d epochs |", r.LR, r.Epochs)) || !strings.Contains(md, "epochs [1 4] chosen with the rate") {
		t.Fatalf("the report does not name the chosen epochs:\n%s", md)
	}
}

// TestCheckSlack: each self-checked row chooses its slack on the mixed
// validation stream (the adaptation domains' validation windows and the
// pretraining domains'), the least loss of the grid, and its test windows
// keep the update exactly where the prompt's loss rose by less than that
// slack a token. Without the pretraining validation windows the choice is
// refused.
//
// (Over 80 lines: the windows that make a slack matter, then the choice,
// its validation recomputed, and the test windows replayed, on one run.)
func TestCheckSlack(t *testing.T) {
	m, w, sets, base := prepared(t)
	// Windows whose prompt counts up by two and whose rest counts up by
	// one: the trained update raises the prompt's loss but lowers the
	// rest's, so a slack keeps an update the plain check rejects. In
	// validation they reward a slack; the pretraining validation windows
	// count by two throughout, where an update kept is harm.
	rng := rand.New(rand.NewPCG(9, 9))
	counting := func(dom string, rest int32) Window {
		s := make([]int32, w.T+1)
		s[0] = int32(rng.IntN(8))
		for j := 1; j < len(s); j++ {
			step := rest
			if j < w.Prompt {
				step = 2
			}
			s[j] = (s[j-1] + step) % 8
		}
		return Window{Tokens: s, Domain: dom, Bytes: 12}
	}
	extra := *w
	extra.Splits = map[string][]Window{}
	for range 4 {
		extra.Splits["validation"] = append(extra.Splits["validation"], counting("up", 1))
		extra.Splits["test"] = append(extra.Splits["test"], counting("up", 1))
		extra.Splits["harm-validation"] = append(extra.Splits["harm-validation"], counting("noise", 2))
	}
	for _, x := range []struct {
		split string
		dst   **Set
	}{{"validation", &sets.Validation}, {"test", &sets.Test}} {
		extra.Splits[x.split] = append(slices.Clone(w.Splits[x.split]), extra.Splits[x.split]...)
		st, err := Prepare(m, &extra, x.split, 5, nil)
		if err != nil {
			t.Fatal(err)
		}
		*x.dst = st
	}
	w = &extra
	lora := Method{Name: "lora", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureHidden}
	slacks := []float64{0, 0.05, 0.3, 2}
	cfg := Config{Methods: []Method{lora}, LRs: []float64{3e-3}, CheckSlacks: slacks, Seeds: 2, Primary: "hyper", Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 2, Alpha: 1}}
	e := &Evaluator{TB: m.B.(gpu.TrainBackend), Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	if _, _, err := Run(e, sets, w, cfg); err == nil || !strings.Contains(err.Error(), "harm-validation") {
		t.Fatalf("a slack grid without the pretraining validation windows: %v", err)
	}
	var err error
	if sets.HarmVal, err = Prepare(m, w, "harm-validation", 5, nil); err != nil {
		t.Fatal(err)
	}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	row := func(g string) Row {
		return res.Rows[find(res.Rows, func(x Row) bool { return x.Method == "lora" && x.Grouping == g })]
	}
	chk, gated, bse := row(GroupStaticChecked), row(GroupStaticGated), res.Rows[0]
	if len(chk.SlackVal) != len(slacks) || gated.SlackVal != nil || e.CheckSlack != 0 {
		t.Fatalf("slack validation %v on the checked row, %v on the gated one; the evaluator kept slack %g", chk.SlackVal, gated.SlackVal, e.CheckSlack)
	}
	for _, sl := range slacks {
		if v := chk.SlackVal[fmt.Sprint(sl)]; v < chk.SlackVal[fmt.Sprint(chk.CheckSlack)] {
			t.Fatalf("chose slack %g (%.5f) over %g (%.5f)", chk.CheckSlack, chk.SlackVal[fmt.Sprint(chk.CheckSlack)], sl, v)
		}
	}
	// Every slack's validation loss, recomputed here by scoring the
	// checked grouping at that slack (the row replays them from one pass).
	for _, sl := range slacks {
		e.CheckSlack, e.Seed = sl, 1
		var l float64
		n := 0
		for _, s := range []*Set{sets.Validation, sets.HarmVal} {
			sc, err := e.Score(firsts["lora"], s, GroupStaticChecked, 1)
			if err != nil {
				t.Fatal(err)
			}
			for i := range sc.Loss {
				l, n = l+sc.Loss[i], n+sc.N[i]
			}
		}
		if math.Abs(l/float64(n)-chk.SlackVal[fmt.Sprint(sl)]) > 1e-12 {
			t.Fatalf("slack %g: mixed validation %.6f here, %.6f in the row", sl, l/float64(n), chk.SlackVal[fmt.Sprint(sl)])
		}
	}
	e.CheckSlack = 0
	// Every seed's test windows follow the chosen slack, and it matters.
	moved := 0
	for s := range chk.Test {
		for i, got := range chk.Test[s].Loss {
			c := chk.Check[s]
			want := bse.Test[0].Loss[i]
			if c.Loss[i] < chk.CheckSlack*float64(c.N[i]) {
				want = gated.Test[s].Loss[i]
			}
			if got != want {
				t.Fatalf("seed %d window %d: loss %g, want %g at slack %g", s+1, i, got, want, chk.CheckSlack)
			}
			if c.Loss[i] >= 0 && got != bse.Test[0].Loss[i] {
				moved++
			}
		}
	}
	if v := chk.SlackVal; v["0"] == v["0.05"] && v["0"] == v["0.3"] && v["0"] == v["2"] {
		t.Fatalf("every slack reads the same on validation, %v: the choice shows nothing", v)
	}
	t.Logf("slack %g chosen: mixed validation %v; %d test windows kept an update the plain check rejects", chk.CheckSlack, chk.SlackVal, moved)
	if chk.CheckSlack == 0 || moved == 0 {
		t.Fatalf("slack %g kept no update the plain check rejects: the test shows nothing (validation %v)", chk.CheckSlack, chk.SlackVal)
	}
}
