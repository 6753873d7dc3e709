package serve

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// AdaptMode is how an Adaptive model groups the sequences it adapts.
type AdaptMode string

const (
	// AdaptOnline assigns each prompt to the nearest training centroid of
	// a hyper adapter; every centroid's factors are computed once, at
	// start.
	AdaptOnline AdaptMode = "online"
	// AdaptWindow clusters each admission window's prompts by k-means
	// (k = ceil(n / ClusterSize)) and runs the hyper-network on each
	// cluster's mean feature. A window's factors live until its last
	// sequence has left.
	AdaptWindow AdaptMode = "window"
	// AdaptStatic is a static LoRA adapter: every adapted sequence uses
	// its one pair.
	AdaptStatic AdaptMode = "static"
	// AdaptTuned assigns each prompt to the nearest training centroid of a
	// gated basis, as online, then tunes the generated gates of each
	// cluster of an admission window on its prompts' own tokens
	// (AdaptOptions.Tune) before the window decodes: a pool of one gate
	// row per slot, as window mode's.
	AdaptTuned AdaptMode = "tuned"
)

// AdaptOptions configure NewAdaptive.
type AdaptOptions struct {
	// Mode for hyper adapters: AdaptOnline (the default when the adapter
	// stores training centroids) or AdaptWindow (the default otherwise).
	Mode AdaptMode
	// ClusterSize: in window mode a window of n adapted sequences gets
	// k = ceil(n / ClusterSize) clusters; default adapt.DefaultBatchSize.
	ClusterSize int
	Seed        uint64 // window mode: the k-means++ seed of every window
	// Tune is test-time tuning of a gated basis's gates (mode tuned, the
	// default when Steps > 0): Steps Adam steps at rate LR.
	Tune adapt.Tune
}

// Adaptive serves a model with an adapter (package adapt): each adapted
// sequence's logits get its cluster's low-rank update, every row's own,
// in one fused adapt.Ops.Logits call per step; rows with adaptation off
// get cluster -1, the base logits. Every step goes through that call, so
// a sequence's logits do not depend on what else is in the batch.
//
// Factors live in one plan whose clusters are rows of one tensor: the
// training centroids (online), the adapter's pair (static), or in window
// mode a pool of one row per slot (a running sequence holds at most one
// row; rows whose sequences have all left are reused by later windows).
// A new window recomputes the whole pool with the hyper-network on the
// same number of rows, so a row still in use keeps bit-identical factors.
type Adaptive struct {
	M    *model.Model
	RT   *adapt.Runtime
	Mode AdaptMode

	opt   AdaptOptions
	plan  *adapt.Plan
	means []float32 // window mode: (slots, C) each pool row's hyper-network input; zeros when free
	gates []float32 // tuned mode: (slots, R) each pool row's tuned gates; zeros when free
	// slotClusters is ForwardLast's scratch: each slot's cluster this
	// step, -1 for the base model, handed to plan.SetClusters.
	slotClusters []int
	// grouped holds what the last online Group learned of its prompts'
	// per-position losses and hidden states
	// (adapt.Runtime.AssignCentroidsHidden), for the cache memory's
	// PromptLosses and PromptHidden to take instead of scoring them again.
	grouped map[*int32]groupedLosses
	// pre follows the prompts assigned in their own prefill
	// (adaptive_prefill.go).
	pre slotPrefill
}

// groupedLosses are one prompt's per-position losses under the cluster
// Group gave it, and its unit hidden states (nil: not known).
type groupedLosses struct {
	n       int // the prompt's length
	cluster int
	losses  []float32
	hid     []float32
}

// NewAdaptive loads adapter a on m's backend. It refuses an adapter made
// for another model (the error names the difference), an experts adapter
// (requests carry no domain) and a mode the adapter cannot run; for a
// hyper adapter in online mode it computes every centroid's factors. It
// ends with one adapted forward on a one-token cache, so that an adapter
// the device cannot run fails here rather than on the first request.
func NewAdaptive(m *model.Model, a *adapt.Adapter, o AdaptOptions) (*Adaptive, error) {
	if a.Meta.Kind == adapt.KindExperts {
		return nil, fmt.Errorf("serve: an experts adapter needs each request's domain, which the API does not carry: serve a hyper or lora adapter")
	}
	if o.ClusterSize <= 0 {
		o.ClusterSize = adapt.DefaultBatchSize
	}
	rt, err := adapt.NewRuntime(m, a)
	if err != nil {
		return nil, fmt.Errorf("serve: refusing the %s adapter: %w", a.Meta.Kind, err)
	}
	ad := &Adaptive{M: m, RT: rt, opt: o}
	fail := func(err error) (*Adaptive, error) {
		ad.Close()
		return nil, err
	}
	mode := o.Mode
	if err := o.Tune.Check(); err != nil {
		return fail(fmt.Errorf("serve: %w", err))
	}
	switch {
	case o.Tune.Steps > 0 && mode != "" && mode != AdaptTuned:
		return fail(fmt.Errorf("serve: adaptation mode %q does not tune gates: tuning runs in mode tuned", mode))
	case o.Tune.Steps > 0 || mode == AdaptTuned:
		if !a.Meta.Basis || rt.Centroids == nil || o.Tune.Steps == 0 {
			return fail(fmt.Errorf("serve: adaptation mode tuned needs a gated basis with training centroids (adapt train --method hyper-basis; this is a %s) and tuning steps (%d)",
				a.Meta.KindLabel(), o.Tune.Steps))
		}
		mode = AdaptTuned
	case a.Meta.Kind == adapt.KindLoRA:
		if mode != "" && mode != AdaptStatic {
			return fail(fmt.Errorf("serve: adaptation mode %q: a lora adapter has one fixed pair (mode static)", mode))
		}
		mode = AdaptStatic
	case mode == "" && rt.Centroids != nil:
		mode = AdaptOnline
	case mode == "":
		mode = AdaptWindow
	}
	ad.Mode = mode
	switch mode {
	case AdaptStatic:
		ad.plan, err = rt.PlanMeans(1, nil)
	case AdaptOnline, AdaptTuned:
		if rt.Centroids == nil {
			return fail(fmt.Errorf("serve: adaptation mode online needs training centroids, and this hyper adapter stores none: use mode window"))
		}
		ad.plan, err = rt.CentroidPlan(1) // tuned: replaced by the pool of gates in NewCache
	case AdaptWindow:
		if a.Meta.Kind != adapt.KindHyper {
			return fail(fmt.Errorf("serve: adaptation mode window needs a hyper adapter, not %s", a.Meta.Kind))
		}
		ad.plan, err = rt.PlanMeans(1, make([]float32, rt.FeatureWidth())) // a placeholder until NewCache sizes the pool
	default:
		return fail(fmt.Errorf("serve: unknown adaptation mode %q (online, window, tuned or static)", mode))
	}
	if err != nil {
		return fail(fmt.Errorf("serve: adapter: %w", err))
	}
	if err := ad.selfCheck(); err != nil {
		return fail(err)
	}
	return ad, nil
}

// selfCheck runs one token through the model with cluster 0's update.
func (a *Adaptive) selfCheck() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serve: adapter self-check: internal error: %v", r)
		}
	}()
	c, err := a.M.NewCache(1, 1)
	if err != nil {
		return fmt.Errorf("serve: adapter self-check: %w", err)
	}
	defer a.M.FreeCache(c)
	if err := a.plan.SetClusters([]int{0}); err != nil {
		return fmt.Errorf("serve: adapter self-check: %w", err)
	}
	logits, err := a.M.ForwardAdapted(c, [][]int32{{0}}, true, a.plan.Adapter(nil))
	if err := a.plan.SetClusters([]int{-1}); err != nil {
		panic(err) // -1 is always in range
	}
	if err != nil {
		return fmt.Errorf("serve: adapter self-check (one adapted token): %w", err)
	}
	a.M.B.Free(logits)
	return nil
}

// Close frees the adapter's factors and parameters. Call it once the
// scheduler has stopped.
func (a *Adaptive) Close() {
	if a.plan != nil {
		a.plan.Free()
		a.plan = nil
	}
	if a.RT != nil {
		a.RT.Free()
		a.RT = nil
	}
}

// K is the number of clusters of the current plan (the pool's rows in
// window mode).
func (a *Adaptive) K() int { return a.plan.K }

// String describes the adaptation for logs.
func (a *Adaptive) String() string {
	meta := a.RT.Meta
	kind := meta.KindLabel() + " adapter"
	switch a.Mode {
	case AdaptOnline:
		return fmt.Sprintf("%s, rank %d, online assignment to %d training centroids", kind, meta.Rank, a.RT.Centroids.K)
	case AdaptWindow:
		return fmt.Sprintf("%s, rank %d, k-means over each admission window (k = ceil(n / %d))", kind, meta.Rank, a.opt.ClusterSize)
	case AdaptTuned:
		return fmt.Sprintf("%s, rank %d, online assignment to %d training centroids, each admission window's clusters tuning their gates on its prompts (%d Adam steps at %g)",
			kind, meta.Rank, a.RT.Centroids.K, a.opt.Tune.Steps, a.opt.Tune.LR)
	}
	return fmt.Sprintf("%s adapter, rank %d", meta.Kind, meta.Rank)
}

func (a *Adaptive) Config() model.Config { return a.M.Cfg }
func (a *Adaptive) Backend() gpu.Backend { return a.M.B }
func (a *Adaptive) Adapts() bool         { return true }

// NewCache allocates the cache and sizes the plan's per-slot clusters; in
// window mode it makes the pool of one factor row per slot.
func (a *Adaptive) NewCache(slots, tmax int) (*model.Cache, error) {
	c, err := a.M.NewCache(slots, tmax)
	if err != nil {
		return nil, err
	}
	switch a.Mode {
	case AdaptWindow:
		means := make([]float32, slots*a.RT.FeatureWidth())
		p, err := a.RT.PlanMeans(slots, means)
		if err != nil {
			a.M.FreeCache(c)
			return nil, fmt.Errorf("serve: adapter factors for %d slots: %w", slots, err)
		}
		a.plan.Free()
		a.plan, a.means = p, means
	case AdaptTuned:
		gates := make([]float32, slots*a.RT.Meta.Rank)
		p, err := a.RT.PlanGates(slots, gates)
		if err != nil {
			a.M.FreeCache(c)
			return nil, fmt.Errorf("serve: adapter gates for %d slots: %w", slots, err)
		}
		a.plan.Free()
		a.plan, a.gates = p, gates
	}
	a.slotClusters = make([]int, slots)
	for i := range a.slotClusters {
		a.slotClusters[i] = -1
	}
	if err := a.plan.SetClusters(a.slotClusters); err != nil {
		panic(err) // -1 is always in range
	}
	return c, nil
}

func (a *Adaptive) FreeCache(c *model.Cache) { a.M.FreeCache(c) }

// ForwardLast runs the step with each slot's adaptation: slot b's rows
// get cluster ad[b].Cluster when ad[b].On, else the base logits.
func (a *Adaptive) ForwardLast(c *model.Cache, tokens [][]int32, ad []Adapter) (gpu.Tensor, error) {
	return a.forwardLast(c, tokens, ad, nil)
}

// forwardLast is ForwardLast, copying the final hidden states into hidden
// (nil: none).
func (a *Adaptive) forwardLast(c *model.Cache, tokens [][]int32, ad []Adapter, hidden gpu.Tensor) (gpu.Tensor, error) {
	cl := a.slotClusters
	if len(ad) != len(cl) {
		panic(fmt.Sprintf("serve: Adaptive.ForwardLast: %d adaptations for a plan of %d slots", len(ad), len(cl)))
	}
	for b, x := range ad {
		cl[b] = -1
		if x.On && x.Cluster >= 0 {
			cl[b] = x.Cluster
		}
	}
	if err := a.plan.SetClusters(cl); err != nil { // the scheduler gave a slot a cluster outside the pool
		panic(fmt.Sprintf("serve: Adaptive.ForwardLast: %v", err))
	}
	var pa model.Adapter = a.plan.Adapter(nil)
	if pend := a.pendingSlots(tokens, ad); len(pend) > 0 {
		pa = a.assignInPrefill(tokens, pend, cl)
	}
	if hidden != nil {
		pa = copyHidden(pa, hidden, a.M.B)
	}
	return a.M.ForwardAdapted(c, tokens, true, pa)
}

// Group gives the newly admitted adapted prompts their clusters: the
// nearest training centroid (online), the one pair (static; -1 where a
// gated LoRA keeps the base model), in window mode k-means over the
// prompts, each cluster getting a free pool row and the hyper-network's
// factors for its mean feature, or in tuned mode the nearest centroid's
// gates tuned on the prompts of that centroid, each in a free pool row.
func (a *Adaptive) Group(prompts [][]int32, live []int) ([]int, error) {
	switch a.Mode {
	case AdaptStatic:
		return a.RT.StaticClusters(prompts) // the one pair, or the base model where a gated LoRA's gate or self-check says so
	case AdaptOnline:
		cl, lp, hid, err := a.RT.AssignCentroidsHidden(prompts)
		a.grouped = nil
		if err == nil && lp != nil {
			a.grouped = make(map[*int32]groupedLosses, len(prompts))
			for i, p := range prompts {
				if len(p) >= 2 {
					g := groupedLosses{n: len(p), cluster: cl[i], losses: lp[i]}
					if hid != nil {
						g.hid = hid[i]
					}
					a.grouped[&p[0]] = g
				}
			}
		}
		return cl, err
	case AdaptTuned:
		return a.groupTuned(prompts, live)
	}
	n := len(prompts)
	if n == 0 {
		return nil, nil
	}
	assign, means, err := a.RT.ClusterSeqs(prompts, cluster.DefaultK(n, a.opt.ClusterSize), a.opt.Seed)
	if err != nil {
		return nil, err
	}
	rows, next := a.poolRows(live, means, a.means, a.RT.FeatureWidth())
	p, err := a.RT.PlanMeans(a.plan.K, next)
	if err != nil {
		return nil, err
	}
	if err := a.swapPlan(p); err != nil {
		return nil, err
	}
	a.means = next
	out := make([]int, n)
	for i, j := range assign {
		out[i] = rows[j]
	}
	return out, nil
}

// groupTuned is Group in tuned mode: one plan over the new prompts
// (online assignment, the gate, the self-check, then the tuning of each
// assigned centroid's gates on its prompts), whose tuned gates move into
// free pool rows.
func (a *Adaptive) groupTuned(prompts [][]int32, live []int) ([]int, error) {
	n := len(prompts)
	if n == 0 {
		return nil, nil
	}
	tp, err := a.RT.Plan(prompts, adapt.PlanOptions{Mode: adapt.ModeOnline, Tune: a.opt.Tune})
	if err != nil {
		return nil, err
	}
	defer tp.Free()
	tuned, err := tp.Gates()
	if err != nil {
		return nil, err
	}
	r := len(tuned) / tp.K
	pos := map[int]int{} // each centroid the prompts use: its place among the new rows
	var rowsIn []float32
	for _, c := range tp.Cluster {
		if _, ok := pos[c]; c >= 0 && !ok {
			pos[c] = len(pos)
			rowsIn = append(rowsIn, tuned[c*r:(c+1)*r]...)
		}
	}
	out := make([]int, n)
	if len(pos) == 0 {
		for i := range out {
			out[i] = -1
		}
		return out, nil
	}
	rows, next := a.poolRows(live, rowsIn, a.gates, r)
	p, err := a.RT.PlanGates(a.plan.K, next)
	if err != nil {
		return nil, err
	}
	if err := a.swapPlan(p); err != nil {
		return nil, err
	}
	a.gates = next
	for i, c := range tp.Cluster {
		out[i] = -1
		if c >= 0 {
			out[i] = rows[pos[c]]
		}
	}
	return out, nil
}

// poolRows places len(fresh)/width new rows in the pool (cur, one row of
// width values per slot): rows that live (the clusters of sequences still
// running) keep their values, the others are zeroed and the new rows take
// the first free ones. It returns the pool rows the new rows got and the
// pool's next values.
func (a *Adaptive) poolRows(live []int, fresh, cur []float32, width int) ([]int, []float32) {
	slots := a.plan.K
	used := make([]bool, slots)
	for _, r := range live {
		if r < 0 || r >= slots {
			panic(fmt.Sprintf("serve: Adaptive.Group: live cluster %d outside the pool of %d", r, slots))
		}
		used[r] = true
	}
	next := make([]float32, slots*width) // rows no one uses stay zero
	var free []int
	for r := 0; r < slots; r++ {
		if used[r] {
			copy(next[r*width:(r+1)*width], cur[r*width:(r+1)*width])
		} else {
			free = append(free, r)
		}
	}
	k := len(fresh) / width
	if len(free) < k {
		panic(fmt.Sprintf("serve: Adaptive.Group: %d new clusters but %d free pool rows (%d live sequences + new ones exceed the %d slots?)", k, len(free), len(live), slots))
	}
	for j := 0; j < k; j++ {
		copy(next[free[j]*width:(free[j]+1)*width], fresh[j*width:(j+1)*width])
	}
	return free[:k], next
}

// swapPlan makes p (a pool of the same rows) the plan, keeping every
// slot's cluster.
func (a *Adaptive) swapPlan(p *adapt.Plan) error {
	if err := p.SetClusters(a.plan.Cluster); err != nil { // the same pool of slots rows
		p.Free()
		return fmt.Errorf("serve: Adaptive.Group: %w", err)
	}
	a.plan.Free()
	a.plan = p
	return nil
}
