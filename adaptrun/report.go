package adaptrun

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// RowSummary is one row's figures, averaged over seeds.
type RowSummary struct {
	Name          string     `json:"name"`
	Role          string     `json:"role"`
	Params        int        `json:"trainable_params"`
	Bytes         int64      `json:"bytes_stored"`
	FLOPsPerToken float64    `json:"added_flops_per_token"`
	Loss          float64    `json:"test_loss"`    // nats/token over the adaptation domains, seed mean
	LossSD        float64    `json:"test_loss_sd"` // across seeds
	PPL           float64    `json:"test_ppl"`
	BPB           float64    `json:"test_bpb"`
	DomainPPL     []float64  `json:"domain_ppl"`
	DomainBPB     []float64  `json:"domain_bpb"`
	VsBase        Interval   `json:"vs_base"`          // pooled over seeds
	VsBest        []Interval `json:"vs_best_baseline"` // per seed
	GapClosed     float64    `json:"gap_closed"`       // (base - row) / (base - experts oracle)
	HarmPct       []float64  `json:"harm_ppl_pct"`     // per harm domain: perplexity change against the base model, %
	HarmRolePct   []float64  `json:"harm_role_pct"`    // pretraining, held-out: perplexity change, %
	// Mixed is the serving picture: every test window of every domain
	// (adaptation, pretraining, held-out) in one stream, the change in
	// nats/token against the base model, pooled over seeds, with its
	// paired bootstrap interval. A static update helps the first and may
	// hurt the others; the gate and the clusters decide who is adapted.
	Mixed *Interval `json:"mixed_vs_base,omitempty"`
	Val   float64   `json:"validation_loss"`
	LR    float64   `json:"lr,omitempty"`
}

// PrimaryAuto picks the primary method on validation (Summarise).
const PrimaryAuto = "auto"

// Summary is what the benchmark shows.
type Summary struct {
	Rows         []RowSummary `json:"rows"`
	BestBaseline string       `json:"best_baseline"` // chosen on validation
	Primary      string       `json:"primary"`       // the tested method (its online row)
	Oracle       string       `json:"oracle"`
	Targets      []string     `json:"targets"` // each target, met or missed, with its figure
	ExpertsGain  float64      `json:"experts_gain"`
}

func find(rows []Row, pred func(Row) bool) int {
	for i, r := range rows {
		if pred(r) {
			return i
		}
	}
	return -1
}

// PrimaryMethod is the tested method (see Summarise).
func (r *Result) PrimaryMethod() string { return r.primary() }

// primary is the tested method: Result.Primary, or with PrimaryAuto the
// ChamaleonLLM variant whose online row is best on validation, chosen
// before any test figure is looked at.
func (r *Result) primary() string {
	if r.Primary != "" && r.Primary != PrimaryAuto {
		return r.Primary
	}
	p, bv := "", math.Inf(1)
	for _, x := range r.Rows {
		if x.Kind == KindHyper && x.Grouping == GroupOnline && x.Gate == "" && x.Val < bv {
			p, bv = x.Method, x.Val
		}
	}
	return p
}

// Summarise computes the summary of r.
func (r *Result) Summarise() Summary {
	var s Summary
	bi := find(r.Rows, func(x Row) bool { return x.Role == RoleBase })
	oi := find(r.Rows, func(x Row) bool { return x.Role == RoleOracle })
	primary := r.primary()
	pi := find(r.Rows, func(x Row) bool { return x.Method == primary && x.Grouping == GroupOnline && x.Gate == "" })
	best, bestVal := -1, math.Inf(1)
	for i, x := range r.Rows {
		if x.Role == RoleBaseline && x.Val < bestVal {
			best, bestVal = i, x.Val
		}
	}
	if best >= 0 {
		s.BestBaseline = r.Rows[best].Name
	}
	if pi >= 0 {
		s.Primary = primary
	}
	if oi >= 0 {
		s.Oracle = r.Rows[oi].Name
	}
	baseLoss := r.Rows[bi].Test[0].Mean(nil)
	var oracleLoss float64
	if oi >= 0 {
		oracleLoss = pooled(r.Rows[oi].Test).Mean(nil)
		s.ExpertsGain = baseLoss - oracleLoss
	}
	nd := len(r.TestDomains)
	for i, x := range r.Rows {
		p := pooled(x.Test)
		rs := RowSummary{Name: x.Name, Role: x.Role, Params: x.Params, Bytes: x.Bytes, FLOPsPerToken: x.FLOPsPerToken,
			Loss: p.Mean(nil), Val: x.Val, LR: x.LR}
		var m, m2 float64
		for _, t := range x.Test {
			l := t.Mean(nil)
			m += l / float64(len(x.Test))
			m2 += l * l / float64(len(x.Test))
		}
		rs.LossSD = math.Sqrt(math.Max(0, m2-m*m))
		rs.PPL = math.Exp(rs.Loss)
		rs.BPB = bpb(p, r.TestBytes, nil)
		for d := range nd {
			keep := func(j int) bool { return r.TestDom[j] == d }
			rs.DomainPPL = append(rs.DomainPPL, math.Exp(p.Mean(keep)))
			rs.DomainBPB = append(rs.DomainBPB, bpb(p, r.TestBytes, keep))
		}
		if i != bi {
			rs.VsBase = PairedBootstrap(p, r.Rows[bi].Test[0], r.Bootstrap, uint64(i))
		}
		if best >= 0 && i != best && x.Role != RoleBase {
			bt := r.Rows[best].Test
			for si, t := range x.Test {
				rs.VsBest = append(rs.VsBest, PairedBootstrap(t, bt[min(si, len(bt)-1)], r.Bootstrap, uint64(100*i+si)))
			}
		}
		if s.ExpertsGain != 0 {
			rs.GapClosed = (baseLoss - rs.Loss) / s.ExpertsGain
		}
		if len(x.Harm) > 0 && len(r.Rows[bi].Harm) > 0 {
			hp, hb := pooled(x.Harm), r.Rows[bi].Harm[0]
			for d := range r.HarmDomains {
				keep := func(j int) bool { return r.HarmDom[j] == d }
				rs.HarmPct = append(rs.HarmPct, 100*(math.Exp(hp.Mean(keep)-hb.Mean(keep))-1))
			}
			for _, role := range []string{RolePretrain, RoleHeldOut} {
				keep := func(j int) bool { return r.Roles[r.HarmDomains[r.HarmDom[j]]] == role }
				rs.HarmRolePct = append(rs.HarmRolePct, 100*(math.Exp(hp.Mean(keep)-hb.Mean(keep))-1))
			}
			if i != bi {
				iv := PairedBootstrap(concatScores(p, hp), concatScores(r.Rows[bi].Test[0], hb), r.Bootstrap, uint64(7000+i))
				rs.Mixed = &iv
			}
		}
		s.Rows = append(s.Rows, rs)
	}
	s.Targets = r.targets(s, bi, oi, pi, best)
	return s
}

// bpb is bits per byte: summed nats over the scored bytes, in bits.
func bpb(s Scores, bytes []int, keep func(int) bool) float64 {
	var l float64
	var b int
	for i := range s.Loss {
		if keep == nil || keep(i) {
			l += s.Loss[i]
			b += bytes[i]
		}
	}
	return l / float64(max(b, 1)) / math.Ln2
}

// targets states each of the targets with the figure that decides it.
func (r *Result) targets(s Summary, bi, oi, pi, best int) []string {
	var out []string
	mark := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	if oi >= 0 {
		out = append(out, fmt.Sprintf("sanity gate (experts gain >= 0.05 nats/token over the base model): %s, %.4f",
			mark(s.ExpertsGain >= 0.05), s.ExpertsGain))
	}
	if pi < 0 {
		return out
	}
	p := s.Rows[pi]
	out = append(out, "tested method (the ChamaleonLLM variant best on validation, online): "+p.Name)
	// gap renders a share of the base-to-experts gap, or says that the
	// run has no oracle experts to measure it by.
	gap := func(g float64) string {
		if s.ExpertsGain == 0 {
			return "the gap not measured (no oracle experts row)"
		}
		return fmt.Sprintf("%.0f%% of the gap", 100*g)
	}
	if s.ExpertsGain == 0 {
		out = append(out, "online ChamaleonLLM closes >= 50% of the base-to-experts gap: not measured (no oracle experts row)")
	} else {
		out = append(out, fmt.Sprintf("online ChamaleonLLM closes >= 50%% of the base-to-experts gap: %s, %.0f%% (moonshot 80%%)",
			mark(p.GapClosed >= 0.5), 100*p.GapClosed))
	}
	if best >= 0 {
		n := 0
		for _, iv := range p.VsBest {
			if iv.Hi < 0 {
				n++
			}
		}
		out = append(out, fmt.Sprintf("beats the best baseline on validation (%s) with the interval below zero in >= 2 of %d seeds: %s, %d of %d",
			r.Rows[best].Name, len(p.VsBest), mark(n >= 2 && n >= (len(p.VsBest)+1)/2), n, len(p.VsBest)))
		out = append(out, r.likeForLike(s.Primary, best)...)
	}
	for xi, x := range s.Rows {
		if x.Role == RoleBaseline || x.Role == RoleControl {
			d := PairedBootstrap(pooled(r.Rows[pi].Test), pooled(r.Rows[xi].Test), r.Bootstrap, 9)
			out = append(out, fmt.Sprintf("  vs %s: %s (%.4f vs %.4f nats/token; difference %+.4f [%+.4f, %+.4f])", x.Name, mark(p.Loss < x.Loss),
				p.Loss, x.Loss, d.Mean, d.Lo, d.Hi))
		}
	}
	ri := find(r.Rows, func(x Row) bool { return x.Method == s.Primary && x.Grouping == GroupRandom })
	ci := find(r.Rows, func(x Row) bool { return x.Method == s.Primary && x.Grouping == GroupClustered })
	if ri >= 0 && ci >= 0 {
		pr := PairedBootstrap(pooled(r.Rows[ci].Test), pooled(r.Rows[ri].Test), r.Bootstrap, 7)
		po := PairedBootstrap(pooled(r.Rows[pi].Test), pooled(r.Rows[ri].Test), r.Bootstrap, 8)
		out = append(out, fmt.Sprintf("clustered or online batches beat random batches: %s (clustered - random %+.4f [%.4f, %.4f], online - random %+.4f [%.4f, %.4f] nats/token)",
			mark(pr.Hi < 0 || po.Hi < 0), pr.Mean, pr.Lo, pr.Hi, po.Mean, po.Lo, po.Hi))
	}
	if ci := find(r.Rows, func(x Row) bool { return x.Method == s.Primary && x.Grouping == GroupChecked && x.Gate == "" }); ci >= 0 && len(s.Rows[ci].HarmRolePct) == 2 {
		c := s.Rows[ci]
		out = append(out, fmt.Sprintf("with the self-check: %s; no harm on the pretraining domains: %s, %+.2f%%; on the held-out domains: %s, %+.2f%%",
			gap(c.GapClosed), mark(c.HarmRolePct[0] <= 0.5), c.HarmRolePct[0], mark(c.HarmRolePct[1] <= 0.5), c.HarmRolePct[1]))
	}
	if len(p.HarmRolePct) == 2 {
		out = append(out, fmt.Sprintf("no harm (<= +0.5%% perplexity) on the pretraining domains: %s, %+.2f%%; on the held-out domains: %s, %+.2f%%",
			mark(p.HarmRolePct[0] <= 0.5), p.HarmRolePct[0], mark(p.HarmRolePct[1] <= 0.5), p.HarmRolePct[1]))
	}
	return out
}

// Markdown renders the summary as the benchmark's tables.
//
// (Over 80 lines: the report's tables in order, one block each, all writing the
// same builder from the same result.)
func (r *Result) Markdown(s Summary) string {
	var b strings.Builder
	epochs := fmt.Sprintf("%d epochs", r.Opts.Epochs)
	if len(r.EpochGrid) > 1 {
		epochs = fmt.Sprintf("epochs %v chosen with the rate", r.EpochGrid)
	}
	if len(r.ClusterGrid) > 1 {
		epochs += fmt.Sprintf(", training clusters of %v windows chosen with the rate for the hyper-networks", r.ClusterGrid)
	}
	if len(r.DecayGrid) > 1 {
		epochs += fmt.Sprintf(", the gate network's weight decay %v chosen with the rate for the gated bases", r.DecayGrid)
	}
	fmt.Fprintf(&b, "Windows of %d tokens, the first %d the prompt (features come from it; tokens %d..%d are scored); %v windows; %d seeds; learning rates %v chosen per method on validation; batches of %d windows, %s; paired bootstrap over test windows (%d resamples). Model: %s. %.0f s.\n\n",
		r.T, r.Prompt, r.Prompt, r.T, r.Windows, r.Seeds, r.LRs, r.Opts.Batch, epochs, r.Bootstrap, r.Model, r.Seconds)
	b.WriteString("Test perplexity on the adaptation domains (mean over seeds), bits per byte, and the change in nats/token against the base model with its 95% interval:\n\n")
	b.WriteString("| # | row | role | trainable params | bytes stored | added FLOPs/token |")
	for _, d := range r.TestDomains {
		b.WriteString(" " + d + " |")
	}
	b.WriteString(" all | bits/byte | vs base (nats/token) | gap closed |\n|---|---|---|---|---|---|")
	for range r.TestDomains {
		b.WriteString("---|")
	}
	b.WriteString("---|---|---|---|\n")
	num := 0
	for _, x := range s.Rows {
		label := "–"
		if x.Role != RoleBase {
			num++
			label = fmt.Sprint(num) // the plot's numbering
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %.0f |", label, x.Name, x.Role, x.Params, x.Bytes, x.FLOPsPerToken)
		for _, p := range x.DomainPPL {
			fmt.Fprintf(&b, " %.2f |", p)
		}
		fmt.Fprintf(&b, " **%.2f** | %.3f |", x.PPL, x.BPB)
		if x.Role == RoleBase {
			b.WriteString(" | |\n")
			continue
		}
		g := "–" // no oracle experts in the run: no gap to close
		if s.ExpertsGain != 0 {
			g = fmt.Sprintf("%.0f%%", 100*x.GapClosed)
		}
		fmt.Fprintf(&b, " %+.4f [%+.4f, %+.4f] | %s |\n", x.VsBase.Mean, x.VsBase.Lo, x.VsBase.Hi, g)
	}
	fmt.Fprintf(&b, "\nAgainst the best baseline on validation (%s), per seed: difference in test nats/token with its 95%% interval (negative: better):\n\n", s.BestBaseline)
	b.WriteString("| row | per seed | intervals below zero |\n|---|---|---|\n")
	for _, x := range s.Rows {
		if len(x.VsBest) == 0 || x.Role == RoleBaseline {
			continue
		}
		var parts []string
		n := 0
		for _, iv := range x.VsBest {
			parts = append(parts, fmt.Sprintf("%+.4f [%+.4f, %+.4f]", iv.Mean, iv.Lo, iv.Hi))
			if iv.Hi < 0 {
				n++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d of %d |\n", x.Name, strings.Join(parts, "; "), n, len(x.VsBest))
	}
	if len(r.HarmDomains) > 0 {
		b.WriteString("\nNo harm: test perplexity change against the base model on domains no adapter trained on (%); the last column puts " +
			"every test window of every domain (adaptation, pretraining, held-out) in one stream: the change in nats/token " +
			"against the base model with its 95% interval (negative: better):\n\n| row |")
		for _, d := range r.HarmDomains {
			fmt.Fprintf(&b, " %s (%s) |", d, r.Roles[d])
		}
		b.WriteString(" pretraining | held-out | mixed stream, nats/token [95%] |\n|---|")
		for range r.HarmDomains {
			b.WriteString("---|")
		}
		b.WriteString("---|---|---|\n")
		for _, x := range s.Rows {
			if len(x.HarmPct) == 0 || x.Role == RoleBase {
				continue
			}
			fmt.Fprintf(&b, "| %s |", x.Name)
			for _, p := range x.HarmPct {
				fmt.Fprintf(&b, " %+.2f |", p)
			}
			fmt.Fprintf(&b, " %+.2f | %+.2f |", x.HarmRolePct[0], x.HarmRolePct[1])
			if x.Mixed != nil {
				fmt.Fprintf(&b, " %+.4f [%+.4f, %+.4f] |\n", x.Mixed.Mean, x.Mixed.Lo, x.Mixed.Hi)
			} else {
				b.WriteString(" |\n")
			}
		}
	}
	r.writeGrid(&b)
	b.WriteString("\nTargets:\n\n")
	for _, t := range s.Targets {
		b.WriteString("- " + t + "\n")
	}
	return b.String()
}

// WriteJSON writes the result and its summary.
func (r *Result) WriteJSON(path string, s Summary) error {
	js, err := json.MarshalIndent(struct {
		Result  *Result `json:"result"`
		Summary Summary `json:"summary"`
	}{r, s}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(js, '\n'), 0o644)
}

// ReadJSON reads what WriteJSON wrote (for redrawing the report).
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".gz") {
		z, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("adaptrun: %s: %w", path, err)
		}
		if b, err = io.ReadAll(z); err != nil {
			return nil, fmt.Errorf("adaptrun: %s: %w", path, err)
		}
	}
	var v struct {
		Result *Result `json:"result"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("adaptrun: %s: %w", path, err)
	}
	if v.Result == nil || len(v.Result.Rows) == 0 {
		return nil, fmt.Errorf("adaptrun: %s holds no benchmark rows", path)
	}
	return v.Result, nil
}

// WritePNG draws every row's change in test loss against the base model
// (pooled over seeds) with its 95% interval.
func (r *Result) WritePNG(path string, s Summary) error {
	p := plot.New()
	p.Title.Text = "adaptation domains: test loss change vs the base model (95% paired bootstrap)"
	p.Y.Label.Text = "change in nats/token (lower is better)"
	p.Add(plotter.NewGrid())
	var names []string
	var pts plotter.XYs
	var errs plotter.YErrors
	colors := map[string]color.Color{RoleBaseline: color.RGBA{R: 90, G: 90, B: 90, A: 255}, RoleOracle: color.RGBA{G: 140, A: 255},
		RoleMethod: color.RGBA{B: 200, A: 255}, RoleControl: color.RGBA{R: 200, A: 255}}
	byRole := map[string]plotter.XYs{}
	for _, x := range s.Rows {
		if x.Role == RoleBase {
			continue
		}
		i := float64(len(names))
		names = append(names, fmt.Sprintf("%d", len(names)+1))
		pt := plotter.XY{X: i, Y: x.VsBase.Mean}
		pts = append(pts, pt)
		byRole[x.Role] = append(byRole[x.Role], pt)
		errs = append(errs, struct{ Low, High float64 }{x.VsBase.Mean - x.VsBase.Lo, x.VsBase.Hi - x.VsBase.Mean})
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{pts, errs})
	if err != nil {
		return err
	}
	p.Add(eb)
	for _, role := range []string{RoleBaseline, RoleOracle, RoleMethod, RoleControl} {
		if len(byRole[role]) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(byRole[role])
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = colors[role]
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		sc.GlyphStyle.Radius = vg.Points(4)
		p.Add(sc)
		p.Legend.Add(role, sc)
	}
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = color.Black
	p.Add(zero)
	p.NominalX(names...)
	p.X.Label.Text = "row (numbered as in the table, base model omitted)"
	p.Legend.Top = true
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}
