package adaptrun

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
)

// TuneResult is a gated basis scored with and without test-time tuning of
// its gates (GroupTuned), the tuning's rate chosen on validation.
type TuneResult struct {
	Steps   int                `json:"steps"`
	LRVal   map[string]float64 `json:"lr_val"`  // validation nats/token against the base model, per rate tried
	LR      float64            `json:"lr"`      // chosen
	Checked float64            `json:"checked"` // test nats/token against base: online, gated, self-checked
	Tuned   float64            `json:"tuned"`   // the same with tuned gates
	// TunedVsChecked is tuned minus checked (nats/token, paired over test
	// windows); TunedVsOther tuned minus another run's row (Versus).
	TunedVsChecked Interval  `json:"tuned_vs_checked"`
	Other          string    `json:"other,omitempty"`
	OtherMean      float64   `json:"other_mean,omitempty"`
	TunedVsOther   *Interval `json:"tuned_vs_other,omitempty"`
	CheckedVsOther *Interval `json:"checked_vs_other,omitempty"`
	// HarmChecked and HarmTuned are the harm split's perplexity change
	// (%, pretraining and held-out domains together) against the base.
	HarmChecked float64 `json:"harm_checked"`
	HarmTuned   float64 `json:"harm_tuned"`
	// Per test window: base, checked and tuned losses.
	Base, CheckedScores, TunedScores Scores
}

// TuneEval scores the gated basis a (its file's gate and training
// centroids, self-checked) on sets' validation split with test-time tuning
// of steps Adam steps at each rate of lrs, and on the test and harm splits
// without tuning and with the rate best on validation.
func TuneEval(e *Evaluator, a *adapt.Adapter, sets Sets, steps int, lrs []float64, iters int, progress func(what string)) (*TuneResult, error) {
	if !a.Meta.Basis {
		return nil, fmt.Errorf("adaptrun: test-time gate tuning is for a gated basis (the file is a %s adapter)", a.Meta.Kind)
	}
	if sets.Validation == nil || sets.Test == nil || len(lrs) == 0 || steps < 1 {
		return nil, fmt.Errorf("adaptrun: tuning needs validation and test windows, a rate and a step")
	}
	tr, err := fileTrained(e, a, "gated basis")
	if err != nil {
		return nil, err
	}
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	res := &TuneResult{Steps: steps, LRVal: map[string]float64{}}
	say("validation, base model")
	vb, err := e.Score(nil, sets.Validation, GroupBase, 1)
	if err != nil {
		return nil, err
	}
	best := 0.0
	for i, lr := range lrs {
		say(fmt.Sprintf("validation, tuned at rate %g", lr))
		e.Tune = Tune{Steps: steps, LR: lr}
		vs, err := e.Score(tr, sets.Validation, GroupTuned, 1)
		if err != nil {
			return nil, err
		}
		d := vs.Mean(nil) - vb.Mean(nil)
		res.LRVal[fmt.Sprint(lr)] = d
		if i == 0 || d < best {
			best, res.LR = d, lr
		}
	}
	e.Tune = Tune{Steps: steps, LR: res.LR}
	for _, x := range []struct {
		s       *Set
		harm    bool
		b, c, t *Scores
	}{{sets.Test, false, &res.Base, &res.CheckedScores, &res.TunedScores}, {sets.Harm, true, new(Scores), new(Scores), new(Scores)}} {
		if x.s == nil {
			continue
		}
		for _, g := range []struct {
			name string
			t    *Trained
			dst  *Scores
		}{{GroupBase, nil, x.b}, {GroupChecked, tr, x.c}, {GroupTuned, tr, x.t}} {
			say(fmt.Sprintf("%s, %s", x.s.Name, g.name))
			if *g.dst, err = e.Score(g.t, x.s, g.name, 1); err != nil {
				return nil, err
			}
		}
		if x.harm {
			res.HarmChecked, res.HarmTuned = pplChange(*x.c, *x.b), pplChange(*x.t, *x.b)
		}
	}
	res.Checked = res.CheckedScores.Mean(nil) - res.Base.Mean(nil)
	res.Tuned = res.TunedScores.Mean(nil) - res.Base.Mean(nil)
	res.TunedVsChecked = PairedBootstrap(res.TunedScores, res.CheckedScores, iters, 3)
	return res, nil
}

// Versus compares the tuned test losses with row name of another run's
// test stream (an adapt cache result over the same windows).
func (r *TuneResult) Versus(other *CacheResult, label, row string, iters int) error {
	si := slices.IndexFunc(other.Streams, func(s CacheStream) bool { return s.Name == "test" })
	if si < 0 {
		return fmt.Errorf("adaptrun: versus %s: no test stream", label)
	}
	st := other.Streams[si]
	ri := slices.IndexFunc(st.Rows, func(x CacheRow) bool { return x.Name == row })
	if ri < 0 {
		return fmt.Errorf("adaptrun: versus %s: no row %q in its test stream", label, row)
	}
	y := st.Rows[ri]
	if len(y.scores.Loss) != len(r.TunedScores.Loss) || !slices.Equal(y.scores.N, r.TunedScores.N) {
		return fmt.Errorf("adaptrun: versus %s: row %q scored other windows or tokens than these", label, row)
	}
	iv, ic := PairedBootstrap(r.TunedScores, y.scores, iters, 3), PairedBootstrap(r.CheckedScores, y.scores, iters, 3)
	r.Other, r.OtherMean, r.TunedVsOther, r.CheckedVsOther = label+": "+row, y.Diff.Mean, &iv, &ic
	return nil
}

// Markdown writes the result's table.
func (r *TuneResult) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Test-time tuning of the gates: %d Adam steps on each batch's prompts, rate %g chosen on validation (", r.Steps, r.LR)
	keys := make([]string, 0, len(r.LRVal))
	for k := range r.LRVal {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			fmt.Fprint(w, "; ")
		}
		fmt.Fprintf(w, "%s: %+.4f", k, r.LRVal[k])
	}
	fmt.Fprint(w, " nats/token against base).\n\n")
	fmt.Fprintln(w, "| row (test split, adaptation domains) | nats/token vs base | harm: ppl change on the harm split |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| online, gated, self-checked | %+.4f | %+.2f%% |\n", r.Checked, r.HarmChecked)
	fmt.Fprintf(w, "| the same, gates tuned on the batch's prompts | %+.4f | %+.2f%% |\n", r.Tuned, r.HarmTuned)
	fmt.Fprintf(w, "\nTuned minus untuned: %+.4f [%+.4f, %+.4f] nats/token (paired over windows).\n", r.TunedVsChecked.Mean, r.TunedVsChecked.Lo, r.TunedVsChecked.Hi)
	if r.TunedVsOther != nil {
		fmt.Fprintf(w, "\nAgainst %s (%+.4f nats/token against base), paired over the same windows:\n", r.Other, r.OtherMean)
		fmt.Fprintf(w, "- untuned minus it: %+.4f [%+.4f, %+.4f]\n", r.CheckedVsOther.Mean, r.CheckedVsOther.Lo, r.CheckedVsOther.Hi)
		fmt.Fprintf(w, "- tuned minus it: %+.4f [%+.4f, %+.4f]\n", r.TunedVsOther.Mean, r.TunedVsOther.Lo, r.TunedVsOther.Hi)
	}
}

// pplChange is the perplexity change (%) of a against b over the same
// windows.
func pplChange(a, b Scores) float64 {
	return 100 * (math.Exp(a.Mean(nil)-b.Mean(nil)) - 1)
}

// ZeroGateBasis is a single LoRA as a gated basis whose network gives
// every input zero gates (its weights and biases zero): it scores exactly
// as the LoRA until its gates are tuned, which makes it the control of
// test-time tuning without a hyper-network. The LoRA's features,
// training centroids and gate carry over; it needs them (a gated LoRA).
func ZeroGateBasis(a *adapt.Adapter) (*adapt.Adapter, error) {
	if a.Meta.Kind != adapt.KindLoRA || a.Meta.Experts != 1 || a.Meta.Features == "" || len(a.Meta.Sites) > 0 {
		return nil, fmt.Errorf("adaptrun: a zero-gate basis is made from a gated LoRA of the output projection (have %s, %d sites, features %q)",
			a.Meta.Kind, len(a.Meta.Sites), a.Meta.Features)
	}
	meta := a.Meta
	meta.Kind, meta.Basis, meta.StaticRank, meta.Experts, meta.Hidden = adapt.KindHyper, true, a.Meta.Rank, 0, []int{1}
	byName := map[string][]float32{}
	for _, t := range a.Tensors {
		byName[t.Name] = t.Data
	}
	spec := adapt.StaticSpec(1, a.Meta.Rank, meta.Base.Config.NEmbd, meta.Base.Config.VocabSize)
	byName[adapt.StaticPairA], byName[adapt.StaticPairB] = byName[spec[0].Name], byName[spec[1].Name]
	out := &adapt.Adapter{Meta: meta}
	for _, s := range meta.Spec() {
		s.Data = byName[s.Name]
		if s.Data == nil {
			s.Data = make([]float32, gpu.Numel(s.Shape)) // the gate network: zero
		}
		out.Tensors = append(out.Tensors, s)
	}
	return out, out.Validate()
}
