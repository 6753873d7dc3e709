package train

import (
	"fmt"
	"math"
)

// NonFiniteError reports a step whose loss or gradient norm is NaN or ±Inf.
// The step applied no update.
type NonFiniteError struct {
	Step     int     // the step (1-based) that failed
	Loss     float64 // the batch's mean loss
	GradNorm float64 // the global gradient norm (NaN when not computed)
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("train: step %d: non-finite loss %g or gradient norm %g; no update was applied", e.Step, e.Loss, e.GradNorm)
}

// Trainer runs optimisation steps of a Model with AdamW under a Schedule.
type Trainer struct {
	M     *Model
	Opt   *AdamW
	Sched Schedule

	afterBackward func() // test hook: runs after the backward is recorded
}

// StepResult describes one completed step.
type StepResult struct {
	Step     int     // 1-based index of the step just taken
	Loss     float64 // mean loss of the batch, before the update
	GradNorm float64 // global gradient norm, before clipping
	LR       float64 // learning rate applied
	Tokens   int     // scored positions of the batch
}

// Step runs one optimisation step on batch: zero the gradients, forward,
// backward, the global gradient norm, then (after one read of the loss and
// the norm) the AdamW update, which is recorded and runs with the next
// flush. A non-finite loss or gradient norm returns a *NonFiniteError and
// changes no parameter, moment or step count.
func (tr *Trainer) Step(batch Batch) (StepResult, error) {
	m := tr.M
	step := tr.Opt.Step + 1
	m.ZeroGrad()
	if err := m.Forward(batch); err != nil {
		return StepResult{}, err
	}
	if err := m.Backward(); err != nil {
		return StepResult{}, err
	}
	if tr.afterBackward != nil {
		tr.afterBackward()
	}
	tr.Opt.GradNorm(m.Grads())
	loss, n, err := m.Loss()
	if err != nil {
		return StepResult{}, err
	}
	nsq, err := tr.Opt.ReadNormSq()
	if err != nil {
		return StepResult{}, err
	}
	norm := math.Sqrt(nsq)
	if !finite(loss) || !finite(norm) {
		return StepResult{}, &NonFiniteError{Step: step, Loss: loss, GradNorm: norm}
	}
	lr := tr.Sched.At(step)
	tr.Opt.Update(m.Params(), m.Grads(), lr)
	return StepResult{Step: step, Loss: loss, GradNorm: norm, LR: lr, Tokens: n}, nil
}

// Eval returns the mean loss of m over batches (no gradients), weighting
// each batch by its scored positions, and the number of positions.
func Eval(m *Model, batches []Batch) (float64, int, error) {
	var sum float64
	total := 0
	for _, b := range batches {
		if err := m.Forward(b); err != nil {
			return 0, 0, err
		}
		l, n, err := m.Loss()
		if err != nil {
			return 0, 0, err
		}
		sum += l * float64(n)
		total += n
	}
	if total == 0 {
		return math.NaN(), 0, nil
	}
	return sum / float64(total), total, nil
}
