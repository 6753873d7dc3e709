package adaptrun

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

// checkSelected checks the experts' selected row of TestRunTiny's run
// (res; tr its first seed's experts, e an evaluator that has seen
// nothing): each window's choice is the expert under which its prompt
// loses least, computed again through the oracle's grouping with every
// window labelled as that expert's domain, or the base model where no
// expert beats it; each window, of the test (s) and held-out (h) windows,
// scores as under the expert it chose, or as the base model where it chose
// none or the experts' gate keeps it there; and on the
// fixture's two domains (two counting rules) most windows choose their own.
func checkSelected(t *testing.T, e *Evaluator, res *Result, s, h *Set, tr *Trained) {
	t.Helper()
	var sel, orc, bse *Row
	for i := range res.Rows {
		switch r := &res.Rows[i]; {
		case r.Method == "experts" && r.Grouping == GroupSelected && r.Gate == "":
			sel = r
		case r.Method == "experts" && r.Grouping == GroupOracle:
			orc = r
		case r.Role == RoleBase:
			bse = r
		}
	}
	if sel == nil || orc == nil || bse == nil {
		t.Fatal("no selected or oracle experts row, or no base row")
	}
	if len(sel.Selected) != len(sel.Test) || len(sel.SelectedOwn) != len(sel.Test) {
		t.Fatalf("%s: %d choices and %d own-domain shares recorded for %d seeds", sel.Name, len(sel.Selected), len(sel.SelectedOwn), len(sel.Test))
	}
	own := 0
	for _, x := range []struct {
		s         *Set
		got, base Scores
	}{{s, sel.Test[0], bse.Test[0]}, {h, sel.Harm[0], bse.Harm[0]}} {
		choice := checkChoices(t, e, tr, x.s, x.got, x.base)
		if x.s == s && !slices.Equal(sel.Selected[0], choice) {
			t.Fatalf("%s: choices %v, recomputed %v", sel.Name, sel.Selected[0], choice)
		}
		for i, c := range choice {
			if x.s == s && c >= 0 && tr.Domains[c] == s.Domains[s.Dom[i]] {
				own++
			}
		}
	}
	n := len(s.Windows)
	if got := float64(own) / float64(n); got != sel.SelectedOwn[0] || got < 0.75 {
		t.Fatalf("%s: %.2f of the windows chose their own domain's expert (recorded %.2f); want at least 0.75", sel.Name, got, sel.SelectedOwn[0])
	}
	checkSpoiled(t, e, s, tr, bse.Test[0])
}

// checkChoices checks that e's selected grouping of experts tr on s makes
// the choices selectAgain recomputes, and that each window scores (got) as
// under the expert it chose, or as the base model (base) where it chose
// none or the experts' gate keeps it there. It returns the choices.
func checkChoices(t *testing.T, e *Evaluator, tr *Trained, s *Set, got, base Scores) []int {
	t.Helper()
	choice, want := selectAgain(t, e, tr, s)
	closed, err := e.gateFor(tr, s)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range choice {
		ref := base.Loss[i]
		if c >= 0 && !closed(i) {
			ref = want[c].Loss[i]
		}
		if l := got.Loss[i]; math.Abs(l-ref) > 1e-6*math.Abs(ref) {
			t.Fatalf("%s, %s window %d (choice %d): loss %g, want %g (base %g)", tr.M.Name, s.Name, i, c, l, ref, base.Loss[i])
		}
	}
	return choice
}

// checkSpoiled checks the base model's side of a selection: experts tr
// with every tensor scaled 30 times (updates far too large, and no gate)
// help few windows' prompts, so that windows of s choose the base model
// and score as it (base).
func checkSpoiled(t *testing.T, e *Evaluator, s *Set, tr *Trained, base Scores) {
	t.Helper()
	sp := *tr
	sp.Radius = 0
	sp.Adapter = &adapt.Adapter{Meta: tr.Adapter.Meta}
	for _, x := range tr.Adapter.Tensors {
		x.Data = slices.Clone(x.Data)
		for i := range x.Data {
			x.Data[i] *= 30
		}
		sp.Adapter.Tensors = append(sp.Adapter.Tensors, x)
	}
	got, err := e.Score(&sp, s, GroupSelected, 1)
	if err != nil {
		t.Fatal(err)
	}
	choice := checkChoices(t, e, &sp, s, got, base)
	if !slices.Equal(e.lastSelect, choice) || slices.Index(choice, -1) < 0 {
		t.Fatalf("spoiled experts: choices %v, recomputed %v; want some windows at the base model", e.lastSelect, choice)
	}
}

// selectAgain is the choice selectByPrompt should make for each window of
// s, and each expert's scores of s, computed through the oracle's
// grouping with every window labelled as that expert's domain.
func selectAgain(t *testing.T, e *Evaluator, tr *Trained, s *Set) ([]int, []Scores) {
	t.Helper()
	ps := promptTargets(s)
	bp, err := e.Score(nil, ps, GroupBase, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := len(s.Windows)
	choice, best := uniform(n, -1), slices.Clone(bp.Loss)
	var all []Scores
	for x := range tr.Domains {
		for _, set := range []*Set{ps, s} {
			as := *set
			as.Domains, as.Dom = tr.Domains, uniform(n, x)
			sc, err := e.Score(tr, &as, GroupOracle, 1)
			if err != nil {
				t.Fatal(err)
			}
			if set == s {
				all = append(all, sc)
				continue
			}
			for i, l := range sc.Loss {
				if l < best[i] {
					choice[i], best[i] = x, l
				}
			}
		}
	}
	return choice, all
}

// TestSelectedEpochs: training by selection (Method.Select) puts each
// training window, from the second epoch on, under the centroid among its
// nearest whose update best predicts its prompt, each window's prompt
// scored again alone here, in the epoch's batches and order; the first
// epoch keeps k-means' clusters; and training so runs on the reference and
// on WebGPU.
func TestSelectedEpochs(t *testing.T) {
	meth := Method{Name: "basis", Kind: KindHyper, Rank: 3, Features: adapt.FeatureHidden, Hidden: []int{5}, Recluster: true, Basis: true, Mixed: true}
	for _, b := range []gpu.Backend{ref.New(), gputest.Backend(t)} {
		m, d, tr := trainedOn(t, b, meth, 2)
		net := fileNet(t, b, m, tr)
		defer net.Free()
		// The file's network reads raw features: standardise by nothing.
		f := d.Feature(meth.Features)
		dim := len(f) / len(d.Windows)
		mu, sd := make([]float64, dim), make([]float64, dim)
		for i := range sd {
			sd[i] = 1
		}
		res, err := kmeans(f, dim, 3, 7)
		if err != nil {
			t.Fatal(err)
		}
		perm := rand.New(rand.NewPCG(1, 2)).Perm(len(d.Windows))
		reassign := selectedEpochs(net, meth, d, 4, []clustering{{res, perm}, {res, perm}}, mu, sd)
		if gs, err := reassign(0); gs != nil || err != nil {
			t.Fatalf("epoch 0 reassigned: %v %v", gs, err)
		}
		gs, err := reassign(1)
		if err != nil {
			t.Fatal(err)
		}
		ps, moved := promptTargets(d), 0
		var order []int
		for _, g := range gs {
			order = append(order, g.Members...)
			for j, wi := range g.Members {
				got := g.Means[g.Cluster[j]*dim : (g.Cluster[j]+1)*dim]
				best, bx := math.Inf(1), -1
				for x := range res.Centroids.K {
					ls, err := net.Losses(ps.scoredBatch(group{Members: []int{wi}, Cluster: []int{0}, K: 1, Means: res.Centroids.Row(x)}, 1))
					if err != nil {
						t.Fatal(err)
					}
					var l float64
					for _, v := range ls {
						l += float64(v)
					}
					if l < best {
						best, bx = l, x
					}
				}
				if !slices.Equal(got, res.Centroids.Row(bx)) {
					t.Fatalf("%s: window %d trains under %v, its prompt chooses centroid %d %v", b.Name(), wi, got, bx, res.Centroids.Row(bx))
				}
				if bx != res.Assign[wi] {
					moved++
				}
			}
		}
		if !slices.Equal(order, perm) {
			t.Fatalf("%s: the batches' order %v, the epoch's %v", b.Name(), order, perm)
		}
		if moved == 0 {
			t.Fatalf("%s: every window chose its k-means cluster: the test shows nothing", b.Name())
		}
		sel := meth
		sel.Select = true
		if _, _, st := trainedOn(t, b, sel, 3); len(st.Losses) == 0 || math.IsNaN(st.Losses[len(st.Losses)-1]) {
			t.Fatalf("%s: training by selection: losses %v", b.Name(), st.Losses)
		}
	}
}

// TestSelectedServedMatchesBench: a gated basis's file with its gate,
// self-check and a selection among its training centroids (adapt's
// Meta.Select, the serving path: adapt.Runtime plans each batch from its
// prompts) scores every test window as the benchmark's selected row scores
// the same training from cached hidden states.
func TestSelectedServedMatchesBench(t *testing.T) {
	m, w, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	cfg := Config{Methods: []Method{basisMethod}, LRs: []float64{3e-2}, Seeds: 1, Primary: basisMethod.Name, Bootstrap: 10,
		Opts: TrainOpts{Batch: 4, Epochs: 3, Alpha: 1}}
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Without oracle experts the report has no gap to measure, and says so.
	if md := res.Markdown(res.Summarise()); !strings.Contains(md, "gap: not measured (no oracle experts row)") || strings.Contains(md, "gap: MISSED") {
		t.Fatalf("a run without experts reports a gap:\n%s", md)
	}
	var row *Row
	for i := range res.Rows {
		if r := &res.Rows[i]; r.Grouping == GroupSelected && r.Gate == "" {
			row = r
		}
	}
	tr := firsts[basisMethod.Name]
	if row == nil || tr == nil {
		t.Fatal("no selected row or first-seed basis")
	}
	if ok, err := GateAndSelfCheck(tr, sets.Train, nil, 4); !ok || err != nil {
		t.Fatalf("gate: %v %v", ok, err)
	}
	a := *tr.Adapter
	a.Meta.Select = min(SelectNearest, a.Meta.Centroids)
	if a.Meta.Select < 2 {
		t.Fatalf("%d training centroids: nothing to select among", a.Meta.Centroids)
	}
	sv, err := ScoreServed(m, &a, "test", w.Splits["test"], ServedOpts{Prompt: w.Prompt, Batch: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, moved := 0, 0
	for i, l := range sv.Adapted.Loss {
		want := row.Test[0].Loss[i]
		if !sameLoss(l, want) {
			t.Fatalf("test window %d: served %g (cluster %d), the benchmark's selected row %g (choice %d)", i, l, sv.Cluster[i], want, row.Selected[0][i])
		}
		if sv.Kept[i] {
			kept++
			if sv.Cluster[i] != row.Selected[0][i] {
				t.Fatalf("test window %d: served under centroid %d, the benchmark chose %d", i, sv.Cluster[i], row.Selected[0][i])
			}
		}
	}
	near, err := tr.Cents.Nearest(sets.Test.Feature(basisMethod.Features), 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range row.Selected[0] {
		if x >= 0 && x != near[i][0] {
			moved++
		}
	}
	if kept == 0 || moved == 0 {
		t.Fatalf("%d test windows adapted, %d of them away from their nearest centroid: the comparison says little", kept, moved)
	}
}
