package adaptrun

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
)

// Choosing a staged self-check (adapt.CheckStages) on validation: every
// window of the validation split (adaptation domains) and of the fit split
// (training windows of the pretraining domains: the only windows of other
// domains that no test uses) is scored once with the self-check off, which
// gives every prompt prediction's loss under the base model and the update
// of the window's cluster. Each rule of a grid is then applied to those
// losses as the runtime applies it, counting the predictions it scores;
// the one chosen is the cheapest whose outcome on both splits is no worse
// than the one-stage check's by more than a tolerance.

// StageOpts are ChooseStages' grid and tolerances.
type StageOpts struct {
	Strides []int
	Margins []float64
	// TolVal and TolFit (nats/token over each split's scored targets): how
	// much worse than the one-stage check's a rule's validation gain and
	// fit-split change may be.
	TolVal, TolFit float64
	Batch          int // windows a plan
	CheckTokens    int // adapt.Runtime.CheckTokens (0: default)
}

// DefaultStageOpts is the grid `chameleon adapt stage` searches.
func DefaultStageOpts() StageOpts {
	return StageOpts{
		Strides: []int{2, 3, 4, 6, 8},
		Margins: []float64{0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5},
		TolVal:  0.001, TolFit: 0.0002, Batch: 16,
	}
}

// StageSplit is a rule's outcome on one split.
type StageSplit struct {
	Windows int `json:"windows"`
	Open    int `json:"open"`  // windows the gate lets through to the self-check
	Kept    int `json:"kept"`  // windows that keep their update
	Agree   int `json:"agree"` // open windows decided as the one-stage check decides
	Early   int `json:"early"` // open windows kept on the first stage alone
	// Scored and Checked: predictions the rule scores over the open
	// windows, and those the one-stage check scores.
	Scored  int `json:"scored"`
	Checked int `json:"checked"`
	// Change is the served change, nats/token over every window's
	// targets after the prompt: the update's where kept, 0 elsewhere.
	Change float64 `json:"change"`
}

// Cost is the share of the one-stage check's projections the rule makes.
func (s StageSplit) Cost() float64 {
	if s.Checked == 0 {
		return 0
	}
	return float64(s.Scored) / float64(s.Checked)
}

// StageRule is one rule and its outcome on the validation and fit splits.
type StageRule struct {
	Stride     int        `json:"stride"` // 0: the one-stage check
	Margin     float64    `json:"margin"`
	Validation StageSplit `json:"validation"`
	Fit        StageSplit `json:"fit"`
}

// StageChoice is ChooseStages' table and verdict.
type StageChoice struct {
	Opts  StageOpts   `json:"opts"`
	Full  StageRule   `json:"full"` // the one-stage check
	Rules []StageRule `json:"rules"`
	// Chosen indexes Rules: the cheapest rule within both tolerances of
	// Full (-1: none scores fewer validation predictions than Full, as
	// when no validation window passes the gate).
	Chosen int `json:"chosen"`
}

// Stages is the chosen rule (the zero rule: one stage).
func (c *StageChoice) Stages() adapt.CheckStages {
	if c.Chosen < 0 {
		return adapt.CheckStages{}
	}
	r := c.Rules[c.Chosen]
	return adapt.CheckStages{Stride: r.Stride, Margin: r.Margin}
}

// checkedWindow is one open window's checked predictions' losses, the
// one-stage check's verdict on them and its scored targets' summed
// difference (adapted minus base).
type checkedWindow struct {
	base, adapted []float32
	full          bool
	cont          float64
}

// stageData is a split scored with the self-check off.
type stageData struct {
	windows, targets int
	open             []checkedWindow
}

// ChooseStages scores a's self-check rules on w's validation and fit
// splits (see above). a must be self-checked.
func ChooseStages(m *model.Model, a *adapt.Adapter, w *Windows, o StageOpts, progress func(split string, done, total int)) (*StageChoice, error) {
	if !a.Meta.SelfCheck {
		return nil, fmt.Errorf("adaptrun: the adapter has no self-check to stage")
	}
	for _, s := range o.Strides {
		if err := (adapt.CheckStages{Stride: s}).Validate(); err != nil {
			return nil, err
		}
	}
	for _, mg := range o.Margins {
		if err := (adapt.CheckStages{Stride: 2, Margin: mg}).Validate(); err != nil {
			return nil, err
		}
	}
	open := *a
	open.Meta.SelfCheck, open.Meta.CheckStride, open.Meta.CheckMargin = false, 0, 0
	data := map[string]*stageData{}
	for _, split := range []string{"validation", "fit"} {
		ws := w.Splits[split]
		if len(ws) == 0 {
			if split == "fit" {
				return nil, fmt.Errorf("adaptrun: the windows file has no fit split (training windows of the pretraining domains): choosing a staged check needs windows of other domains to price an early keep")
			}
			return nil, fmt.Errorf("adaptrun: the windows file has no %s split", split)
		}
		sv, err := ScoreServed(m, &open, split, ws, ServedOpts{Prompt: w.Prompt, Batch: o.Batch}, func(done, total int) {
			if progress != nil {
				progress(split, done, total)
			}
		})
		if err != nil {
			return nil, err
		}
		data[split] = stageDataOf(sv, w.Prompt, o.CheckTokens)
	}
	c := &StageChoice{Opts: o, Chosen: -1}
	c.Full = stageRule(adapt.CheckStages{}, data)
	for _, s := range o.Strides {
		for _, mg := range o.Margins {
			r := stageRule(adapt.CheckStages{Stride: s, Margin: mg}, data)
			c.Rules = append(c.Rules, r)
			ok := r.Validation.Change <= c.Full.Validation.Change+o.TolVal && r.Fit.Change <= c.Full.Fit.Change+o.TolFit
			saves := r.Validation.Scored < r.Validation.Checked // validation windows through the gate, fewer predictions scored
			if ok && saves && (c.Chosen < 0 || r.Validation.Cost() < c.Rules[c.Chosen].Validation.Cost()) {
				c.Chosen = len(c.Rules) - 1
			}
		}
	}
	return c, nil
}

// stageDataOf keeps what the rules need of a split scored with the
// self-check off: the windows the gate let through, each with its prompt's
// last checkTokens predictions (as adapt.Runtime cuts them).
func stageDataOf(sv *Served, prompt, checkTokens int) *stageData {
	n := prompt - 1 // the prompt's predictions
	switch {
	case checkTokens == 0 && n > adapt.DefaultCheckTokens:
		n = adapt.DefaultCheckTokens
	case checkTokens > 0 && n > checkTokens:
		n = checkTokens
	}
	d := &stageData{windows: len(sv.Kept)}
	for i := range sv.Kept {
		d.targets += sv.Base.N[i]
		if !sv.Kept[i] {
			continue
		}
		cw := checkedWindow{
			base:    sv.BaseTok[i][prompt-1-n : prompt-1],
			adapted: sv.AdaptedTok[i][prompt-1-n : prompt-1],
			cont:    sv.Adapted.Loss[i] - sv.Base.Loss[i],
		}
		cw.full, _ = adapt.CheckStages{}.Decide(cw.base, cw.adapted)
		d.open = append(d.open, cw)
	}
	return d
}

// stageRule applies st to both splits.
func stageRule(st adapt.CheckStages, data map[string]*stageData) StageRule {
	r := StageRule{Stride: st.Stride, Margin: st.Margin}
	for split, d := range data {
		var s StageSplit
		s.Windows, s.Open = d.windows, len(d.open)
		for _, w := range d.open {
			keep, n := st.Decide(w.base, w.adapted)
			s.Scored, s.Checked = s.Scored+n, s.Checked+len(w.base)
			if keep == w.full {
				s.Agree++
			}
			if keep {
				s.Kept++
				s.Change += w.cont
				if n < len(w.base) {
					s.Early++
				}
			}
		}
		if d.targets > 0 {
			s.Change /= float64(d.targets)
		}
		if split == "validation" {
			r.Validation = s
		} else {
			r.Fit = s
		}
	}
	return r
}

// Markdown writes the table: the one-stage check, then every rule, the
// chosen one in bold.
func (c *StageChoice) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Staged self-check rules on validation (adaptation domains) and fit (pretraining domains), %d and %d windows, %d and %d through the gate. ",
		c.Full.Validation.Windows, c.Full.Fit.Windows, c.Full.Validation.Open, c.Full.Fit.Open)
	fmt.Fprintf(w, "Chosen: the cheapest rule within %.4f (validation) and %.4f (fit) nats/token of the one-stage check's served change.\n\n", c.Opts.TolVal, c.Opts.TolFit)
	fmt.Fprintln(w, "| rule | validation: cost | kept (early) | agree | change nats/token | fit: cost | kept (early) | agree | change nats/token |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	rows := append([]StageRule{c.Full}, c.Rules...)
	for k, r := range rows {
		name := "one stage"
		if r.Stride > 0 {
			name = fmt.Sprintf("stride %d, margin %.2f", r.Stride, r.Margin)
		}
		if k-1 == c.Chosen && c.Chosen >= 0 {
			name = "**" + name + " (chosen)**"
		}
		fmt.Fprintf(w, "| %s | %.3f | %d (%d) | %d/%d | %+.4f | %.3f | %d (%d) | %d/%d | %+.5f |\n", name,
			r.Validation.Cost(), r.Validation.Kept, r.Validation.Early, r.Validation.Agree, r.Validation.Open, r.Validation.Change,
			r.Fit.Cost(), r.Fit.Kept, r.Fit.Early, r.Fit.Agree, r.Fit.Open, r.Fit.Change)
	}
	if c.Chosen < 0 {
		fmt.Fprintln(w, "\nNo rule is cheaper within the tolerances: the check stays one stage.")
	}
}

// WriteJSON writes c to path.
func (c *StageChoice) WriteJSON(path string) error {
	b, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WithStages is a copy of a whose self-check is staged by st (a's tensors
// shared).
func WithStages(a *adapt.Adapter, st adapt.CheckStages) (*adapt.Adapter, error) {
	out := *a
	out.Tensors = slices.Clone(a.Tensors)
	out.Meta.CheckStride, out.Meta.CheckMargin = st.Stride, st.Margin
	if err := out.Meta.Validate(); err != nil {
		return nil, err
	}
	return &out, nil
}
