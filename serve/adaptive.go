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
	// slotClusters is ForwardLast's scratch: each slot's cluster this
	// step, -1 for the base model, handed to plan.SetClusters.
	slotClusters []int
	// grouped holds what the last online Group learned of its prompts'
	// per-position losses and hidden states
	// (adapt.Runtime.AssignCentroidsHidden), for the cache memory's
	// PromptLosses and PromptHidden to take instead of scoring them again.
	grouped map[*int32]groupedLosses
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
	switch {
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
	case AdaptOnline:
		if rt.Centroids == nil {
			return fail(fmt.Errorf("serve: adaptation mode online needs training centroids, and this hyper adapter stores none: use mode window"))
		}
		ad.plan, err = rt.CentroidPlan(1)
	case AdaptWindow:
		if a.Meta.Kind != adapt.KindHyper {
			return fail(fmt.Errorf("serve: adaptation mode window needs a hyper adapter, not %s", a.Meta.Kind))
		}
		ad.plan, err = rt.PlanMeans(1, make([]float32, rt.FeatureWidth())) // a placeholder until NewCache sizes the pool
	default:
		return fail(fmt.Errorf("serve: unknown adaptation mode %q (online, window or static)", mode))
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
	if a.Mode == AdaptWindow {
		means := make([]float32, slots*a.RT.FeatureWidth())
		p, err := a.RT.PlanMeans(slots, means)
		if err != nil {
			a.M.FreeCache(c)
			return nil, fmt.Errorf("serve: adapter factors for %d slots: %w", slots, err)
		}
		a.plan.Free()
		a.plan, a.means = p, means
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
	if hidden != nil {
		pa = copyHidden(pa, hidden, a.M.B)
	}
	return a.M.ForwardAdapted(c, tokens, true, pa)
}

// Group gives the newly admitted adapted prompts their clusters: the
// nearest training centroid (online), the one pair (static; -1 where a
// gated LoRA keeps the base model), or in window
// mode k-means over the prompts, each cluster getting a free pool row and
// the hyper-network's factors for its mean feature.
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
	}
	n := len(prompts)
	if n == 0 {
		return nil, nil
	}
	assign, means, err := a.RT.ClusterSeqs(prompts, cluster.DefaultK(n, a.opt.ClusterSize), a.opt.Seed)
	if err != nil {
		return nil, err
	}
	c, slots := a.RT.FeatureWidth(), a.plan.K
	k := len(means) / c
	used := make([]bool, slots)
	for _, r := range live {
		if r < 0 || r >= slots {
			panic(fmt.Sprintf("serve: Adaptive.Group: live cluster %d outside the pool of %d", r, slots))
		}
		used[r] = true
	}
	next := make([]float32, slots*c) // rows no one uses stay zero
	var free []int
	for r := 0; r < slots; r++ {
		if used[r] {
			copy(next[r*c:(r+1)*c], a.means[r*c:(r+1)*c])
		} else {
			free = append(free, r)
		}
	}
	if len(free) < k {
		panic(fmt.Sprintf("serve: Adaptive.Group: %d new clusters but %d free pool rows (%d live sequences + %d new exceed the %d slots?)", k, len(free), len(live), n, slots))
	}
	for j := 0; j < k; j++ {
		copy(next[free[j]*c:(free[j]+1)*c], means[j*c:(j+1)*c])
	}
	p, err := a.RT.PlanMeans(slots, next)
	if err != nil {
		return nil, err
	}
	if err := p.SetClusters(a.plan.Cluster); err != nil { // the same pool of slots rows
		p.Free()
		return nil, fmt.Errorf("serve: Adaptive.Group: %w", err)
	}
	a.plan.Free()
	a.plan, a.means = p, next
	out := make([]int, n)
	for i, j := range assign {
		out[i] = free[j]
	}
	return out, nil
}
