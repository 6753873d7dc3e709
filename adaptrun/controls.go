package adaptrun

import (
	"fmt"
	"io"
	"math"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
)

// Controls scores a saved hyper adapter (its file's training centroids,
// gate and self-check) on a test split under every grouping the benchmark
// scores a ChamaleonLLM method by, the two controls included, and pairs
// the rows that say what the clustering and the generated part buy. The
// benchmark computes these rows for the seeds it trains itself; this
// computes them for any file, so a seed trained on its own (adapt train)
// gets the same controls.

// ControlGroupings are the groupings Controls scores, in the benchmark's
// order for a head-only hyper-network.
var ControlGroupings = []string{GroupOnline, GroupUngated, GroupChecked, GroupSelected, GroupClustered, GroupRandom, GroupMean, GroupShuffled}

// ControlPairs are the comparisons Controls reports, each the first
// grouping minus the second (negative: the first is better).
var ControlPairs = [][2]string{
	{GroupOnline, GroupMean},
	{GroupChecked, GroupMean},
	{GroupOnline, GroupShuffled},
	{GroupClustered, GroupMean},
	{GroupClustered, GroupRandom},
	{GroupOnline, GroupRandom},
	{GroupSelected, GroupChecked}, // choosing among every training centroid's update by the prompt, against the nearest one's, checked
}

// ControlRow is one grouping's test figure against the base model.
type ControlRow struct {
	Grouping string   `json:"grouping"`
	Name     string   `json:"name"`
	VsBase   Interval `json:"vs_base"` // nats/token, paired over windows
	PPL      float64  `json:"ppl"`
	Scores   Scores   `json:"scores"` // per test window
}

// ControlPair is one paired comparison of two groupings.
type ControlPair struct {
	A    string   `json:"a"`
	B    string   `json:"b"`
	Diff Interval `json:"diff"`
}

// ControlsResult is Controls' report.
type ControlsResult struct {
	Adapter string        `json:"adapter"`
	Windows int           `json:"windows"`
	BasePPL float64       `json:"base_ppl"`
	Base    Scores        `json:"base"`
	Rows    []ControlRow  `json:"rows"`
	Pairs   []ControlPair `json:"pairs"`
}

// Row returns the row of grouping g (nil: none).
func (r *ControlsResult) Row(g string) *ControlRow {
	for i := range r.Rows {
		if r.Rows[i].Grouping == g {
			return &r.Rows[i]
		}
	}
	return nil
}

// fileTrained is a saved hyper adapter as the evaluator scores a trained
// one: its training centroids and the radius of its gate; the gate's
// centroid halves replace the evaluator's own (e.Train, e.Fit). A gate of
// its own features (adapt.Gate.Features) becomes the evaluator's shared
// gate (e.SharedGate), which every gated grouping then reads.
func fileTrained(e *Evaluator, a *adapt.Adapter, name string) (*Trained, error) {
	cents := a.TrainingCentroids()
	if a.Meta.Kind != adapt.KindHyper || cents == nil {
		return nil, fmt.Errorf("adaptrun: %s is a %s adapter without training centroids: the groupings need a hyper-network trained by adapt train or adapt bench", name, a.Meta.Kind)
	}
	tr := &Trained{M: Method{Name: name, Kind: KindHyper, Features: a.Meta.Features, Basis: a.Meta.Basis}, Adapter: a, Cents: cents}
	switch g := a.Gate(); {
	case g != nil && g.Features != "":
		e.SharedGate, e.shared = g.Features, map[string]adapt.Gate{g.Features: *g}
	case g != nil:
		tr.Radius = g.Radius
		e.gates = map[string][2]*cluster.Centroids{a.Meta.Features: {g.Adapt, g.Pretrain}}
	}
	return tr, nil
}

// Controls scores the hyper adapter a (named name in the rows) on test
// under the base model and every ControlGroupings grouping, with paired
// bootstrap intervals of iters resamples. It refuses an adapter that
// updates the decoder: the mean-update control is defined for the head.
func Controls(e *Evaluator, a *adapt.Adapter, name string, test *Set, iters int, progress func(what string)) (*ControlsResult, error) {
	if len(a.Meta.Sites) > 0 {
		return nil, fmt.Errorf("adaptrun: %s updates the decoder (%v): the controls score head-only adapters", name, a.Meta.Sites)
	}
	if test == nil || len(test.Windows) == 0 {
		return nil, fmt.Errorf("adaptrun: controls need test windows")
	}
	tr, err := fileTrained(e, a, name)
	if err != nil {
		return nil, err
	}
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	res := &ControlsResult{Adapter: name, Windows: len(test.Windows)}
	say("base model")
	if res.Base, err = e.Score(nil, test, GroupBase, 1); err != nil {
		return nil, err
	}
	res.BasePPL = math.Exp(res.Base.Mean(nil))
	for i, g := range ControlGroupings {
		say(rowName(tr.M, g))
		s, err := e.Score(tr, test, g, 1)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, ControlRow{Grouping: g, Name: rowName(tr.M, g),
			VsBase: PairedBootstrap(s, res.Base, iters, uint64(11+i)), PPL: math.Exp(s.Mean(nil)), Scores: s})
	}
	for i, p := range ControlPairs {
		a, b := res.Row(p[0]), res.Row(p[1])
		res.Pairs = append(res.Pairs, ControlPair{A: a.Name, B: b.Name, Diff: PairedBootstrap(a.Scores, b.Scores, iters, uint64(31+i))})
	}
	return res, nil
}

// Markdown writes the rows and the pairs as two tables.
func (r *ControlsResult) Markdown(w io.Writer) {
	fmt.Fprintf(w, "%s on %d test windows (base model perplexity %.2f); nats/token against the base model, paired over windows, with 95%% bootstrap intervals:\n\n",
		r.Adapter, r.Windows, r.BasePPL)
	fmt.Fprintln(w, "| grouping | nats/token [95%] | ppl |\n|---|---|---|")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "| %s | %+.4f [%+.4f, %+.4f] | %.2f |\n", x.Name, x.VsBase.Mean, x.VsBase.Lo, x.VsBase.Hi, x.PPL)
	}
	fmt.Fprintln(w, "\nPaired differences (negative: the first row is better):\n\n| first | minus | nats/token [95%] | interval excludes zero |\n|---|---|---|---|")
	for _, p := range r.Pairs {
		ex := "no"
		if p.Diff.ExcludesZero() {
			ex = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %+.4f [%+.4f, %+.4f] | %s |\n", p.A, p.B, p.Diff.Mean, p.Diff.Lo, p.Diff.Hi, ex)
	}
}
