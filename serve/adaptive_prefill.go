package serve

import (
	"errors"
	"fmt"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Online assignment inside the prompts' own prefill. Group's online
// assignment ran the base model over the admitted prompts (for their
// hidden-state features and the self-check's losses) before the scheduler
// prefilled the same prompts again, chunk by chunk: an adapted request's
// prompt cost two prefills. For an adapter of the head alone, the
// scheduler's prefill is itself the base pass: a slot left pending
// (ClusterPending) has its final hidden rows collected as its chunks go
// through the model (adapt.PromptRows), and the step that feeds its last
// token decides its cluster (adapt.Runtime.AssignPrefilled) before that
// step's head, so the first sampled token is already adapted.

// ClusterPending is Adapter.Cluster of an adapted slot whose cluster the
// forward that feeds its prompt's last token will decide
// (prefillGrouper): until then its logits are the base model's.
const ClusterPending = -2

// prefillGrouper is a Model that can assign admitted prompts from their
// own prefill instead of Group.
type prefillGrouper interface {
	// GroupInPrefill says whether slot b's prompt, just admitted with
	// adaptation on, will be assigned by its prefill; if so the slot's
	// Adapter.Cluster must be ClusterPending until TakeDecided gives it.
	GroupInPrefill(b int, prompt []int32) bool
	// TakeDecided returns the clusters decided by the forwards since the
	// last call (slot: cluster, -1 for the base model) and the slots whose
	// assignment failed, with why.
	TakeDecided() (map[int]int, map[int]error)
}

// slotPrefill is what Adaptive keeps for assignment in the prefill.
type slotPrefill struct {
	rows    map[int]*adapt.PromptRows // pending slots
	decided map[int]int
	failed  map[int]error
}

// GroupInPrefill implements prefillGrouper: in online mode, for a prompt
// the runtime can assign from its prefill (adapt.Runtime.AssignsInPrefill).
func (a *Adaptive) GroupInPrefill(b int, prompt []int32) bool {
	if a.Mode != AdaptOnline {
		return false
	}
	pr, err := a.RT.NewPromptRows(prompt) // refuses where the prefill cannot assign
	if err != nil {
		return false
	}
	if a.pre.rows == nil {
		a.pre.rows = map[int]*adapt.PromptRows{}
	}
	a.pre.rows[b] = pr
	delete(a.pre.decided, b)
	delete(a.pre.failed, b)
	return true
}

// TakeDecided implements prefillGrouper.
func (a *Adaptive) TakeDecided() (map[int]int, map[int]error) {
	d, f := a.pre.decided, a.pre.failed
	a.pre.decided, a.pre.failed = nil, nil
	return d, f
}

// pendingSlots is the slots of this step that feed a pending prompt's
// rows: ad[b] pending with tokens. A pending slot with no prompt being
// followed is the scheduler's error.
func (a *Adaptive) pendingSlots(tokens [][]int32, ad []Adapter) []int {
	var pend []int
	for b, x := range ad {
		if !x.On || x.Cluster != ClusterPending {
			continue
		}
		pr := a.pre.rows[b]
		if pr == nil {
			panic(fmt.Sprintf("serve: Adaptive.ForwardLast: slot %d is pending with no prompt registered (GroupInPrefill)", b))
		}
		if n := len(tokens[b]); n > 0 {
			if f := pr.Fed(); f+n > len(pr.Prompt) || !slices.Equal(tokens[b], pr.Prompt[f:f+n]) {
				panic(fmt.Sprintf("serve: Adaptive.ForwardLast: slot %d feeds %d tokens that are not its prompt's next (at %d of %d)", b, n, f, len(pr.Prompt)))
			}
			pend = append(pend, b)
		}
	}
	return pend
}

// assignInPrefill is the adapter of a step with pending slots
// (adapt.LateHead): from the residual stream it feeds their rows, decides
// the clusters of the slots whose prompt is then complete, sets them in
// the plan (cl is the step's slot clusters, a.slotClusters) and only then
// begins the plan's pass for the head. A failed assignment (other than a
// lost device) leaves those slots at the base model and is reported by
// TakeDecided, so one prompt's bad input does not fail the step.
func (a *Adaptive) assignInPrefill(tokens [][]int32, pend, cl []int) model.Adapter {
	return adapt.LateHead{Choose: func(x gpu.Tensor, _ []int32) (model.Adapter, error) {
		if err := a.feedPending(x, tokens, pend, cl); err != nil {
			return nil, err
		}
		return a.plan.Adapter(nil), nil
	}}
}

// feedPending is assignInPrefill's work on the residual stream x: the
// pending slots' rows stay on the device but for their sums and the rows
// their self-check reads (adapt.Runtime.FeedResidual).
func (a *Adaptive) feedPending(x gpu.Tensor, tokens [][]int32, pend, cl []int) error {
	slots, ns := make([]*adapt.PromptRows, x.Shape()[0]), make([]int, x.Shape()[0])
	for _, b := range pend {
		slots[b], ns[b] = a.pre.rows[b], len(tokens[b])
	}
	if err := a.RT.FeedResidual(x, slots, ns); err != nil {
		return err
	}
	var done []int
	var prs []*adapt.PromptRows
	for _, b := range pend {
		if pr := a.pre.rows[b]; pr.Done() {
			done, prs = append(done, b), append(prs, pr)
		}
	}
	if len(done) == 0 {
		return nil
	}
	as, err := a.RT.AssignPrefilled(prs)
	if errors.Is(err, gpu.ErrDeviceLost) {
		return err
	}
	if a.pre.decided == nil {
		a.pre.decided, a.pre.failed = map[int]int{}, map[int]error{}
	}
	for i, b := range done {
		delete(a.pre.rows, b)
		if err != nil {
			a.pre.failed[b] = err
			continue
		}
		a.pre.decided[b], cl[b] = as[i], as[i]
	}
	if err := a.plan.SetClusters(cl); err != nil {
		return fmt.Errorf("serve: internal error: %w", err)
	}
	return nil
}
