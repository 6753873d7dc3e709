package adaptrun

import (
	"fmt"
	"image/color"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
)

// PromptsOnly is a copy of w whose windows are cut to their prompts: what
// the features need, at a third of the base model's work (Prepare on it
// gives the same Emb and Hid as on w, since the decoder is causal).
func (w *Windows) PromptsOnly() *Windows {
	c := *w
	c.T = w.Prompt
	c.Splits = map[string][]Window{}
	for k, ws := range w.Splits {
		for _, x := range ws {
			c.Splits[k] = append(c.Splits[k], Window{Tokens: x.Tokens[:w.Prompt+1], Domain: x.Domain, Bytes: x.Bytes})
		}
	}
	return &c
}

// GatePoint is one gate setting replayed on a benchmark result.
type GatePoint struct {
	Quantile  float64 `json:"quantile"` // share of training windows inside the radius
	Radius    float64 `json:"radius"`
	Pretrain  bool    `json:"pretrain"`   // with the second half (nearer the pretraining windows: closed)
	SelfCheck bool    `json:"self_check"` // also closed where the update does not lower the prompt\'s own loss
	OpenTest  float64 `json:"open_test"`  // share of adaptation test windows adapted
	OpenHarm  float64 `json:"open_harm"`  // share of no-harm windows adapted
	GapClosed float64 `json:"gap_closed"` // of the base-to-oracle gap, adaptation test windows
	HarmPre   float64 `json:"harm_pre"`   // perplexity change on the pretraining domains, %
	HarmHeld  float64 `json:"harm_held"`  // on the held-out domains, %
}

// GateCurve replays gates of other radii (the quantiles qs of the training
// windows' distances to a's training centroids; 1 means no radius), with
// and without the
// pretraining half, on the first seed of method in res: a window scores
// the method's ungated online loss where the gate opens and the base
// model's where it closes. That is exactly what the online grouping
// scores under that gate, since a row's update depends only on its own
// nearest centroid. a is that seed's adapter (its centroids); sets hold
// the features of res's windows (train, test, harm, and fit for the
// second half) in the same order.
//
// With e set, it also replays a self-check: the update is kept only where
// it lowers the loss of the window's own prompt (its next-token loss over
// the prompt's tokens, which every serving request has after its
// prefill), alone and with the shipped gate. sets must then come from
// PromptsOnly windows (their hidden states cover the prompt).
//
// (Over 80 lines: its input checks, then every gate setting over the same
// distances, losses and self-check verdicts.)
func GateCurve(res *Result, method string, a *adapt.Adapter, sets Sets, batch int, qs []float64, e *Evaluator) ([]GatePoint, error) {
	ri := find(res.Rows, func(x Row) bool { return x.Method == method && x.Grouping == GroupUngated })
	bi := find(res.Rows, func(x Row) bool { return x.Role == RoleBase })
	oi := find(res.Rows, func(x Row) bool { return x.Role == RoleOracle })
	if ri < 0 || bi < 0 || oi < 0 {
		return nil, fmt.Errorf("adaptrun: the result has no ungated online row of %q, base or oracle row", method)
	}
	cents := a.TrainingCentroids()
	if cents == nil || sets.Train == nil || sets.Test == nil || sets.Harm == nil {
		return nil, fmt.Errorf("adaptrun: a gate curve needs the adapter's training centroids and the train, test and harm windows")
	}
	un, base, oracle := res.Rows[ri], res.Rows[bi], res.Rows[oi]
	if len(un.Test[0].Loss) != len(sets.Test.Windows) || len(un.Harm) == 0 || len(un.Harm[0].Loss) != len(sets.Harm.Windows) {
		return nil, fmt.Errorf("adaptrun: the result scored other windows than these")
	}
	kind := a.Meta.Features
	tf := sets.Train.Feature(kind)
	dim := cents.C
	dists := make([]float64, len(sets.Train.Windows))
	for i := range dists {
		dists[i] = adapt.NearestDist(cents, tf[i*dim:(i+1)*dim])
	}
	slices.Sort(dists)
	var gc [2]*cluster.Centroids
	if sets.Fit != nil {
		var err error
		if gc, err = gateCentroids(kind, sets.Train, sets.Fit, batch); err != nil {
			return nil, err
		}
	}
	// helps[set][i]: the update lowers window i's prompt loss (self-check).
	helps := map[*Set][]bool{}
	if e != nil {
		tr := &Trained{M: Method{Name: method, Kind: KindHyper, Features: kind}, Adapter: a, Cents: cents}
		for _, s := range []*Set{sets.Test, sets.Harm} {
			ps := e.promptSet(s)
			bs, err := e.baseScores(ps)
			if err != nil {
				return nil, err
			}
			as, err := e.Score(tr, ps, GroupUngated, 1)
			if err != nil {
				return nil, err
			}
			h := make([]bool, len(bs.Loss))
			for i := range h {
				h[i] = as.Loss[i] < bs.Loss[i]
			}
			helps[s] = h
		}
	}
	selfCheck := false
	replay := func(g *adapt.Gate, s *Set, ungated, baseS Scores) (Scores, float64) {
		f := s.Feature(kind)
		out := Scores{Loss: make([]float64, len(ungated.Loss)), N: ungated.N}
		open := 0
		for i := range out.Loss {
			if g.Closed(cents, f[i*dim:(i+1)*dim]) || (selfCheck && !helps[s][i]) {
				out.Loss[i] = baseS.Loss[i]
			} else {
				out.Loss[i] = ungated.Loss[i]
				open++
			}
		}
		return out, float64(open) / float64(len(out.Loss))
	}
	baseLoss, oracleLoss := base.Test[0].Mean(nil), oracle.Test[0].Mean(nil)
	type setting struct {
		q         float64
		pre, self bool
	}
	var settings []setting
	for _, pre := range []bool{false, true} {
		if pre && gc[1] == nil {
			continue
		}
		for _, q := range qs {
			settings = append(settings, setting{q, pre, false})
		}
	}
	if e != nil { // the self-check alone, and with the shipped gate
		settings = append(settings, setting{1, false, true})
		if gc[1] != nil {
			settings = append(settings, setting{GateQuantile, true, true})
		}
	}
	var out []GatePoint
	for _, st := range settings {
		q, pre := st.q, st.pre
		selfCheck = st.self
		{
			g := &adapt.Gate{} // quantile 1: no radius at all
			if q < 1 {
				g.Radius = dists[min(len(dists)-1, int(q*float64(len(dists))))]
			}
			if pre {
				g.Adapt, g.Pretrain = gc[0], gc[1]
			}
			ts, openT := replay(g, sets.Test, un.Test[0], base.Test[0])
			hs, openH := replay(g, sets.Harm, un.Harm[0], base.Harm[0])
			p := GatePoint{Quantile: q, Radius: g.Radius, Pretrain: pre, SelfCheck: st.self, OpenTest: openT, OpenHarm: openH,
				GapClosed: (baseLoss - ts.Mean(nil)) / (baseLoss - oracleLoss)}
			for _, role := range []string{RolePretrain, RoleHeldOut} {
				keep := func(j int) bool { return res.Roles[res.HarmDomains[res.HarmDom[j]]] == role }
				pct := 100 * (math.Exp(hs.Mean(keep)-base.Harm[0].Mean(keep)) - 1)
				if role == RolePretrain {
					p.HarmPre = pct
				} else {
					p.HarmHeld = pct
				}
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// GateCurveMarkdown is the curve as a table.
func GateCurveMarkdown(method string, pts []GatePoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Gates replayed on the first seed of %s (online): test windows adapted, share of the base-to-oracle gap closed, perplexity change on the domains no adapter trained on.\n\n", method)
	b.WriteString("| radius quantile | radius | pretraining half | self-check | adaptation windows adapted | gap closed | no-harm windows adapted | pretraining ppl | held-out ppl |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pts {
		fmt.Fprintf(&b, "| %.2f | %.3f | %v | %v | %.0f%% | %.0f%% | %.0f%% | %+.2f%% | %+.2f%% |\n", p.Quantile, p.Radius, p.Pretrain, p.SelfCheck,
			100*p.OpenTest, 100*p.GapClosed, 100*p.OpenHarm, p.HarmPre, p.HarmHeld)
	}
	return b.String()
}

// WriteGateCurvePNG draws gap closed against the harm on the pretraining
// and held-out domains, one line per gate family.
func WriteGateCurvePNG(path string, pts []GatePoint) error {
	p := plot.New()
	p.Title.Text = "what the gate trades: gain kept against harm done (first seed)"
	p.X.Label.Text = "perplexity change on domains no adapter trained on, % (lower is better)"
	p.Y.Label.Text = "base-to-oracle gap closed on the adaptation domains, %"
	p.Add(plotter.NewGrid())
	colors := []color.Color{color.RGBA{B: 200, A: 255}, color.RGBA{R: 200, A: 255}, color.RGBA{G: 140, A: 255}, color.RGBA{R: 120, G: 80, B: 160, A: 255}}
	i := 0
	for _, pre := range []bool{false, true} {
		for _, held := range []bool{false, true} {
			var xy plotter.XYs
			for _, q := range pts {
				if q.Pretrain != pre || q.SelfCheck {
					continue
				}
				x := q.HarmPre
				if held {
					x = q.HarmHeld
				}
				xy = append(xy, plotter.XY{X: x, Y: 100 * q.GapClosed})
			}
			if len(xy) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			l.Color, s.Color = colors[i%len(colors)], colors[i%len(colors)]
			s.Shape = draw.CircleGlyph{}
			if held {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l, s)
			name := "radius only"
			if pre {
				name = "radius + pretraining half"
			}
			if held {
				name += ", held-out domains"
			} else {
				name += ", pretraining domains"
			}
			p.Legend.Add(name, l, s)
			i++
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}
