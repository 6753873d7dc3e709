package adaptrun

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
)

// Served is an adapter file scored the way a user runs it, not the way the
// benchmark trains it: adapt.Runtime loads the file, each batch of windows
// is planned from its prompts alone (online assignment to the training
// centroids, then the file's gate and self-check), and the rest of each
// window is scored with model.Score through the plan's model.Adapter
// (updates inside the decoder included) and without it.
type Served struct {
	Split   string   `json:"split"`
	Domains []string `json:"domains"` // each window's
	Base    Scores   `json:"base"`
	Adapted Scores   `json:"adapted"`
	Kept    []bool   `json:"kept"` // the plan adapted the window (the gate and self-check let it through)
	// Cluster is each window's training centroid in the plan (-1: the
	// gate or self-check kept it at the base model; nil: a plan without
	// centroids), which keys the served cache memory's replay.
	Cluster []int `json:"-"`
	// Per window, the losses (nats) of every position, prompt included
	// (j predicts token j+1), without and with the plan, the tokens, and
	// the features the plan computed from the prompt (nil for an adapter
	// without features): what the token cache's evaluation needs.
	BaseTok, AdaptedTok [][]float32 `json:"-"`
	Tokens              [][]int32   `json:"-"`
	Features            [][]float32 `json:"-"`
	Prompt              int         `json:"-"`
	// Per window, the final hidden states (ln_f output, unit rows) of its
	// positions that have a loss, without and with the plan: the neural
	// cache's keys and queries (ScoreServed with Hidden only; one slice when the
	// plan leaves them unchanged, as a head-only update does).
	BaseHidden, AdaptedHidden [][]float32 `json:"-"`
}

// ServedOpts are how ScoreServed plans and scores windows.
type ServedOpts struct {
	Prompt int        // tokens of a window's prompt: features come from them, the rest is scored
	Batch  int        // windows a plan (a batch of the runtime)
	Tune   adapt.Tune // the plans' test-time tuning of a gated basis's gates (adapt.PlanOptions.Tune)
	// CheckTokens is the runtime's adapt.Runtime.CheckTokens (0: default).
	CheckTokens int
	// FullCheck scores a staged self-check's every prediction in one stage
	// (adapt.Runtime.FullCheck): the file's check as it was before staging.
	FullCheck bool
	// Hidden keeps every window's final hidden states (Served.BaseHidden,
	// AdaptedHidden) for the neural cache.
	Hidden bool
}

// ScoreServed scores windows ws (o.Prompt tokens of features each, the
// rest scored) with a on m in plans of o.Batch windows.
func ScoreServed(m *model.Model, a *adapt.Adapter, split string, ws []Window, o ServedOpts, progress func(done, total int)) (*Served, error) {
	return scoreServed(m, a, split, ws, o, progress)
}

// score is m.Score, with each sequence's unit hidden states when hidden
// (adapt.ScoreHidden).
func score(m *model.Model, seqs [][]int32, ad model.Adapter, hidden bool) ([]model.SequenceScore, [][]float32, error) {
	if hidden {
		return adapt.ScoreHidden(m, seqs, ad)
	}
	sc, err := m.Score(seqs, nil, ad)
	return sc, nil, err
}

// Over 80 lines: one batch's plan, its two scoring forwards and the
// bookkeeping of every per-window field read in one place.
func scoreServed(m *model.Model, a *adapt.Adapter, split string, ws []Window, o ServedOpts, progress func(done, total int)) (*Served, error) {
	prompt, batch, hidden := o.Prompt, o.Batch, o.Hidden
	if a.Meta.Kind == adapt.KindExperts {
		return nil, fmt.Errorf("adaptrun: an experts adapter needs each window's domain: score it in adapt bench")
	}
	rt, err := adapt.NewRuntime(m, a)
	if err != nil {
		return nil, err
	}
	defer rt.Free()
	rt.CheckTokens, rt.FullCheck = o.CheckTokens, o.FullCheck
	mode := adapt.ModeBatch
	if rt.Centroids != nil {
		mode = adapt.ModeOnline
	}
	batch = max(batch, 1)
	out := &Served{Split: split, Prompt: prompt}
	for b0 := 0; b0 < len(ws); b0 += batch {
		chunk := ws[b0:min(b0+batch, len(ws))]
		var prompts, seqs [][]int32
		for _, w := range chunk {
			if len(w.Tokens) <= prompt+1 {
				return nil, fmt.Errorf("adaptrun: a window of %d tokens has nothing after its prompt of %d", len(w.Tokens), prompt)
			}
			prompts = append(prompts, w.Tokens[:prompt])
			seqs = append(seqs, w.Tokens)
			out.Domains = append(out.Domains, w.Domain)
		}
		plan, err := rt.Plan(prompts, adapt.PlanOptions{Mode: mode, Tune: o.Tune})
		if err != nil {
			return nil, err
		}
		// Every position is scored (the cache learns from the prompt's);
		// the figures sum the positions after the prompt only.
		base, bh, err := score(m, seqs, nil, hidden)
		if err == nil {
			var ad []model.SequenceScore
			var ah [][]float32
			if ad, ah, err = score(m, seqs, plan.Adapter(nil), hidden); err == nil {
				out.addHidden(bh, ah)
				for i, w := range chunk {
					out.Base = appendScored(out.Base, base[i].Losses, prompt)
					out.Adapted = appendScored(out.Adapted, ad[i].Losses, prompt)
					out.Kept = append(out.Kept, plan.Cluster[i] >= 0)
					if mode == adapt.ModeOnline {
						out.Cluster = append(out.Cluster, plan.Cluster[i])
					}
					out.BaseTok, out.AdaptedTok = append(out.BaseTok, base[i].Losses), append(out.AdaptedTok, ad[i].Losses)
					out.Tokens = append(out.Tokens, w.Tokens)
					if c := len(plan.Features) / len(chunk); c > 0 {
						out.Features = append(out.Features, plan.Features[i*c:(i+1)*c])
					}
				}
			}
		}
		plan.Free()
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(b0+len(chunk), len(ws))
		}
	}
	return out, nil
}

// appendScored adds a window's summed loss over positions prompt-1 on
// (the predictions of the tokens after the prompt), in order.
func appendScored(s Scores, losses []float32, prompt int) Scores {
	sum := 0.0
	for _, l := range losses[prompt-1:] {
		sum += float64(l)
	}
	s.Loss, s.N = append(s.Loss, sum), append(s.N, len(losses)-(prompt-1))
	return s
}

// ServedRow is one domain's (or role's) line of a served score.
type ServedRow struct {
	Name       string   `json:"name"`
	Windows    int      `json:"windows"`
	Kept       int      `json:"kept"` // windows the plan adapted
	BasePPL    float64  `json:"base_ppl"`
	AdaptedPPL float64  `json:"adapted_ppl"`
	ChangePct  float64  `json:"change_pct"`
	Diff       Interval `json:"diff"` // adapted - base, nats/token, paired bootstrap
}

// Rows summarises s per domain (in order) and pooled per role (roles maps
// domain to role; roles with no window are left out).
func (s *Served) Rows(order []string, roles map[string]string, iters int) []ServedRow {
	var out []ServedRow
	for _, d := range order {
		if r, ok := s.row(d, func(x string) bool { return x == d }, iters); ok {
			out = append(out, r)
		}
	}
	for _, role := range []string{RoleAdapt, RolePretrain, RoleHeldOut} {
		if r, ok := s.row("all "+role, func(x string) bool { return roles[x] == role }, iters); ok {
			out = append(out, r)
		}
	}
	return out
}

// row summarises the windows of the domains keep accepts (false: none).
func (s *Served) row(name string, keep func(d string) bool, iters int) (ServedRow, bool) {
	r := ServedRow{Name: name}
	var b, a Scores
	for i, d := range s.Domains {
		if !keep(d) {
			continue
		}
		r.Windows++
		if s.Kept[i] {
			r.Kept++
		}
		b.Loss, b.N = append(b.Loss, s.Base.Loss[i]), append(b.N, s.Base.N[i])
		a.Loss, a.N = append(a.Loss, s.Adapted.Loss[i]), append(a.N, s.Adapted.N[i])
	}
	if r.Windows == 0 {
		return r, false
	}
	r.BasePPL, r.AdaptedPPL = math.Exp(b.Mean(nil)), math.Exp(a.Mean(nil))
	r.ChangePct = 100 * (r.AdaptedPPL/r.BasePPL - 1)
	r.Diff = PairedBootstrap(a, b, iters, 1)
	return r, true
}

// MixedRow pools every window of the given scores (e.g. the test split of
// the adaptation domains and the harm split of the others) into one
// stream: the serving picture, where the plan decides which inputs to
// adapt.
func MixedRow(iters int, ss ...*Served) ServedRow {
	r, _ := concatServed(ss...).row(mixedName, func(string) bool { return true }, iters)
	return r
}

// mixedName is MixedRow's name.
const mixedName = "mixed stream (every window)"

// WriteServedMarkdown writes rows as a Markdown table.
func WriteServedMarkdown(w io.Writer, rows []ServedRow) {
	fmt.Fprintln(w, "| domain | windows | adapted | base ppl | adapted ppl | change | adapted - base, nats/token [95% interval] |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		name := r.Name
		if slices.Contains([]string{"all " + RoleAdapt, "all " + RolePretrain, "all " + RoleHeldOut, mixedName}, name) {
			name = "**" + name + "**"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %.2f | %+.2f%% | %+.4f [%+.4f, %+.4f] |\n",
			name, r.Windows, r.Kept, r.BasePPL, r.AdaptedPPL, r.ChangePct, r.Diff.Mean, r.Diff.Lo, r.Diff.Hi)
	}
}
