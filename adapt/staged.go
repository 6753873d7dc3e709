package adapt

import (
	"fmt"
	"math"
)

// The staged self-check. Scoring a prediction costs a projection onto the
// vocabulary, and the self-check scores up to DefaultCheckTokens of them per
// prompt, which is most of what adaptation adds to a prefill. Most prompts
// that pass the gate gain so clearly that a few of their predictions
// already say so. So a staged check first scores every Stride-th of the
// checked predictions, counting back from the last; a prompt whose
// first-stage mean difference (adapted minus base loss, nats) lies below
// -Margin keeps its update on that evidence alone, and only the others
// have the rest scored and are decided as the unstaged check decides (the
// summed losses of every checked prediction). Nothing is rejected early:
// a rejection is what protects other domains, so it always sees every
// prediction. Stride and Margin are chosen on validation
// (adaptrun.ChooseStages) and stored in the adapter file (Meta.CheckStride,
// Meta.CheckMargin).

// MinFirstStage is the fewest predictions a first stage may decide on: a
// prompt with fewer checked predictions than MinFirstStage*Stride is
// scored in one stage.
const MinFirstStage = 8

// CheckStages is a staged self-check's rule; the zero value scores every
// checked prediction in one stage.
type CheckStages struct {
	Stride int     // the first stage scores every Stride-th checked prediction; 0: one stage
	Margin float64 // nats/token: a first-stage mean difference below -Margin keeps the update
}

// On says whether s stages the check.
func (s CheckStages) On() bool { return s.Stride > 0 }

// Validate reports a rule that cannot be applied.
func (s CheckStages) Validate() error {
	if s.Stride == 0 && s.Margin == 0 {
		return nil
	}
	if s.Stride < 2 {
		return fmt.Errorf("self-check stride %d: want 2 or more (0: one stage)", s.Stride)
	}
	if math.IsNaN(s.Margin) || math.IsInf(s.Margin, 0) || s.Margin < 0 {
		return fmt.Errorf("self-check margin %g: want a finite value of at least 0", s.Margin)
	}
	return nil
}

// FirstStage is the window offsets, ascending, of the predictions the first
// stage scores among n checked ones (offset o predicts the window's token
// o+1): n-1, n-1-Stride, ... It is nil when s is off or the stage would
// hold fewer than MinFirstStage predictions.
func (s CheckStages) FirstStage(n int) []int {
	if !s.On() || n <= 0 {
		return nil
	}
	k := (n-1)/s.Stride + 1
	if k < MinFirstStage {
		return nil
	}
	out := make([]int, k)
	for j := range k {
		out[j] = n - 1 - (k-1-j)*s.Stride
	}
	return out
}

// EarlyKeep says whether first-stage losses (the same predictions under
// the base model and under the update, in FirstStage's order) keep the
// update without a second stage.
func (s CheckStages) EarlyKeep(base, adapted []float32) bool {
	if !s.On() || len(base) == 0 || len(base) != len(adapted) {
		return false
	}
	var d float64
	for j := range base {
		d += float64(adapted[j]) - float64(base[j])
	}
	return d/float64(len(base)) < -s.Margin
}

// Decide is the staged check's verdict for one prompt from the losses of
// all its checked predictions under the base model and the update (what
// it decides whether or not it scores them all), and how many
// predictions it scores to reach it: the first stage's alone where that
// keeps the update, else all.
func (s CheckStages) Decide(base, adapted []float32) (keep bool, scored int) {
	if first := s.FirstStage(len(base)); first != nil {
		b, a := make([]float32, len(first)), make([]float32, len(first))
		for j, o := range first {
			b[j], a[j] = base[o], adapted[o]
		}
		if s.EarlyKeep(b, a) {
			return true, len(first)
		}
	}
	return sumLosses(adapted) < sumLosses(base), len(base)
}

func sumLosses(ls []float32) float64 {
	var t float64
	for _, l := range ls {
		t += float64(l)
	}
	return t
}

// stages is the runtime's staged self-check: the file's, unless
// FullCheck.
func (r *Runtime) stages() CheckStages {
	if r.FullCheck {
		return CheckStages{}
	}
	return CheckStages{Stride: r.Meta.CheckStride, Margin: r.Meta.CheckMargin}
}

// CheckedRows is how many hidden rows the self-check has projected from
// prefills' residual streams (Runtime.Prefill, AssignPrefilled) since the
// runtime was made: what a staged check saves, for benchmarks.
func (r *Runtime) CheckedRows() int { return r.checkRows }
