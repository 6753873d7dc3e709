package adapt

import (
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
)

// Serving: plans whose clusters are chosen up front (the training
// centroids, or the means of a window of requests) and whose sequences are
// the slots of a serving cache. Plan.Cluster is then indexed by slot: the
// caller sets each slot's cluster (-1: unadapted) before every forward, and
// Plan.Adapter applies every row's own cluster in one fused Ops.Logits call
// (and one shrink and one expand per block site).

// PlanMeans makes a plan for slots sequences, all unadapted (-1) until the
// caller sets Plan.Cluster. For a hyper adapter its K clusters have the
// hyper-network inputs means (K, C) host, and the hyper-network runs once
// on all of them (factors of a row depend only on that row's mean, so a
// mean recomputed in another plan of the same K gives the same factors).
// For static adapters means must be nil and the K = Meta.Experts learnt
// pairs are used (lora: K = 1). The caller frees the plan.
func (r *Runtime) PlanMeans(slots int, means []float32) (*Plan, error) {
	if slots < 1 {
		return nil, fmt.Errorf("adapt: plan for %d slots: need at least one", slots)
	}
	p := &Plan{rt: r, Cluster: make([]int, slots), Alpha: r.Meta.Alpha}
	for i := range p.Cluster {
		p.Cluster[i] = -1
	}
	if r.Meta.Kind != KindHyper {
		if means != nil {
			return nil, fmt.Errorf("adapt: a %s adapter has fixed factors: it takes no cluster means", r.Meta.Kind)
		}
		p.K, p.factors = r.Meta.Experts, r.static.Factors()
		return p, p.generateSites(nil)
	}
	c := r.FeatureWidth()
	if len(means) == 0 || len(means)%c != 0 {
		return nil, fmt.Errorf("adapt: %d mean values are not (K, %d) rows with K >= 1", len(means), c)
	}
	// A NaN or Inf input makes its cluster's generated factors, and so
	// every logit of every row given that cluster, NaN.
	for i, x := range means {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("adapt: mean value %d of cluster %d is %g", i%c, i/c, x)
		}
	}
	p.K, p.Means = len(means)/c, slices.Clone(means)
	if err := p.generate(); err != nil {
		return nil, err
	}
	return p, nil
}

// CentroidPlan is PlanMeans on the training centroids: cluster k of the
// plan is centroid k, its factors computed once here. It fails when the
// adapter stores no centroids.
func (r *Runtime) CentroidPlan(slots int) (*Plan, error) {
	if r.Centroids == nil {
		return nil, fmt.Errorf("adapt: a centroid plan needs training centroids; this %s adapter stores none", r.Meta.Kind)
	}
	return r.PlanMeans(slots, r.Centroids.Data)
}

// AssignCentroids returns each sequence's nearest training centroid (the
// online assignment of Mode Online): features of seqs on the device, then
// the assignment kernel; -1 for a sequence the adapter's gate (or its
// self-check) keeps at the base model.
func (r *Runtime) AssignCentroids(seqs [][]int32) ([]int, error) {
	as, _, err := r.AssignCentroidsLosses(seqs)
	return as, err
}

// AssignCentroidsLosses is AssignCentroids that also returns, when its
// self-check's shared base pass knows them (a self-checked adapter with
// hidden-state features and no block sites), each sequence's per-position
// losses (nats; the loss of seqs[i][j+1] at j) under the assignment it
// returns: through its centroid's update, or the base model's for -1 (nil
// rows for sequences of fewer than 2 tokens; nil when not known).
func (r *Runtime) AssignCentroidsLosses(seqs [][]int32) ([]int, [][]float32, error) {
	as, lp, _, err := r.assignCentroids(seqs, false)
	return as, lp, err
}

// AssignCentroidsHidden is AssignCentroidsLosses that also returns, where
// it returns the losses, each sequence's unit final hidden states at
// positions 0 .. len-2 (ScoreHidden's rows; empty for a sequence of one
// token): its self-check's base pass kept them, and with an update of the
// head alone they are those of every cluster's forward (nil when not
// known).
func (r *Runtime) AssignCentroidsHidden(seqs [][]int32) ([]int, [][]float32, [][]float32, error) {
	return r.assignCentroids(seqs, true)
}

// assignCentroids is AssignCentroidsLosses, with the hidden states when
// hidden is set.
func (r *Runtime) assignCentroids(seqs [][]int32, hidden bool) ([]int, [][]float32, [][]float32, error) {
	if r.Centroids == nil {
		return nil, nil, nil, fmt.Errorf("adapt: online assignment needs training centroids; this adapter stores none")
	}
	if len(seqs) == 0 {
		return nil, nil, nil, nil
	}
	pp, err := r.checkPass(seqs, true)
	if err != nil {
		return nil, nil, nil, err
	}
	ft, feats, err := r.featuresWith(seqs, pp.hiddenMeans())
	if err != nil {
		return nil, nil, nil, err
	}
	defer r.cops.Free(ft)
	as, err := r.Centroids.AssignOn(r.cops, ft)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := r.closeGate(as, seqs, feats, pp.hiddenMeans()); err != nil {
		return nil, nil, nil, err
	}
	var lp, hid [][]float32
	if r.Meta.SelfCheck {
		if lp, err = r.checkCentroids(seqs, as, pp, feats); err != nil {
			return nil, nil, nil, err
		}
	}
	if hidden && lp != nil && pp != nil && pp.rows != nil {
		c := r.M.Cfg.NEmbd
		hid = make([][]float32, len(seqs))
		for i, s := range seqs {
			hid[i] = []float32{}
			if n := (len(s) - 1) * c; n > 0 && len(pp.rows[i]) >= n {
				hid[i] = UnitRows(pp.rows[i][:n], c)
			}
		}
	}
	return as, lp, hid, nil
}

// checkCentroids is checkClusters on the training centroids (online
// assignment's clusters) with the runtime's one plan of them: its factors
// depend on nothing but the centroids and the hyper-network, so they are
// made once (the first call) instead of on every assignment.
//
// With Meta.Select, each sequence chooses among its Select nearest
// centroids (of feats, the sequences' features) by its own tokens instead
// (selectCheck).
func (r *Runtime) checkCentroids(seqs [][]int32, cl []int, pp *promptPass, feats []float32) ([][]float32, error) {
	if r.centroidCheck == nil {
		p, err := r.CentroidPlan(1)
		if err != nil {
			return nil, err
		}
		r.centroidCheck = p
	}
	p := *r.centroidCheck // shares the factors; never freed here
	p.Cluster = make([]int, len(seqs))
	if r.Meta.Select > 1 {
		near, err := r.Centroids.Nearest(feats, r.Meta.Select)
		if err != nil {
			return nil, err
		}
		copy(p.Cluster, cl)
		lp, err := p.selectCheck(seqs, pp, near)
		if err != nil {
			return nil, err
		}
		copy(cl, p.Cluster)
		return lp, nil
	}
	return p.checkInto(seqs, cl, pp)
}

// checkClusters runs the self-check on clusters cl of seqs (set to -1
// where it fails) with a plan of the given means (nil: a static adapter's
// fixed factors) and the shared base pass pp (nil: none), returning the
// per-position losses under its decision that the pass knows (selfCheck).
func (r *Runtime) checkClusters(seqs [][]int32, cl []int, means []float32, pp *promptPass) ([][]float32, error) {
	p, err := r.PlanMeans(len(seqs), means)
	if err != nil {
		return nil, err
	}
	defer p.Free()
	return p.checkInto(seqs, cl, pp)
}

// checkInto runs p's self-check on clusters cl of seqs and writes its
// verdict back into cl (-1 where it fails).
func (p *Plan) checkInto(seqs [][]int32, cl []int, pp *promptPass) ([][]float32, error) {
	copy(p.Cluster, cl)
	lp, err := p.selfCheck(seqs, pp)
	if err != nil {
		return nil, err
	}
	copy(cl, p.Cluster)
	return lp, nil
}

// StaticClusters is each sequence's cluster under a LoRA adapter: 0, its
// one pair, or -1, the base model, where the adapter's gate closes (the
// sequence's features lie far from its training centroids, or nearer the
// pretraining domains') or its self-check finds that the update does not
// lower the sequence's own loss. Without a gate or a self-check (and for
// other kinds) every sequence gets 0.
func (r *Runtime) StaticClusters(seqs [][]int32) ([]int, error) {
	cl, _, err := r.staticClusters(seqs)
	return cl, err
}

// staticClusters is StaticClusters that also returns the features the
// gate read ((N, FeatureWidth); nil without a gate).
func (r *Runtime) staticClusters(seqs [][]int32) ([]int, []float32, error) {
	cl := make([]int, len(seqs))
	if r.Meta.Kind != KindLoRA || (r.Gate == nil && !r.Meta.SelfCheck) || len(seqs) == 0 {
		return cl, nil, nil
	}
	pp, err := r.checkPass(seqs, true)
	if err != nil {
		return nil, nil, err
	}
	var feats []float32
	if r.Gate != nil {
		// The gate reads host features: the shared pass's when they are
		// the whole feature, else the features computed (and uploaded) here.
		feats = pp.hiddenMeans()
		if feats == nil || r.Meta.Features != FeatureHidden {
			ft, fs, err := r.featuresWith(seqs, feats)
			if err != nil {
				return nil, nil, err
			}
			r.cops.Free(ft)
			feats = fs
		}
		if err := r.closeGate(cl, seqs, feats, pp.hiddenMeans()); err != nil {
			return nil, nil, err
		}
	}
	if r.Meta.SelfCheck {
		if _, err := r.checkClusters(seqs, cl, nil, pp); err != nil {
			return nil, nil, err
		}
	}
	return cl, feats, nil
}

// ClusterSeqs groups seqs into k clusters (clamped to [1, N]) by k-means on
// their features (seeded k-means++): each sequence's cluster and each
// cluster's mean feature (k, C), the hyper-network inputs of the group.
func (r *Runtime) ClusterSeqs(seqs [][]int32, k int, seed uint64) (assign []int, means []float32, err error) {
	n := len(seqs)
	if n == 0 {
		return nil, nil, fmt.Errorf("adapt: clustering no sequences")
	}
	k = max(1, min(k, n))
	ft, feats, err := r.features(seqs)
	if err != nil {
		return nil, nil, err
	}
	defer r.cops.Free(ft)
	res, err := r.kmeans(ft, feats, cluster.Config{K: k, Seed: seed})
	if err != nil {
		return nil, nil, err
	}
	return res.Assign, MeanFeatures(feats, res.Assign, k, r.FeatureWidth()), nil
}

// HostFeatures are the sequences' features of the adapter's kind on the
// host, (N, FeatureWidth()) row-major: the cache memory's keys for inputs
// without a training centroid.
func (r *Runtime) HostFeatures(seqs [][]int32) ([]float32, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	ft, host, err := r.features(seqs)
	if err != nil {
		return nil, err
	}
	r.cops.Free(ft)
	return host, nil
}

// NearestOpen is feature x's nearest training centroid, or -1 when the
// adapter stores none or its gate keeps x at the base model (the online
// assignment without the self-check). gx is the input's gate feature
// (GateFeatures) for a gate with features of its own; nil: x.
func (r *Runtime) NearestOpen(x, gx []float32) int {
	if gx == nil {
		gx = x
	}
	if r.Centroids == nil || r.Gate.Closed(r.Centroids, gx) {
		return -1
	}
	best, bestD := -1, math.Inf(1)
	for k := range r.Centroids.K {
		var s float64
		for j, v := range r.Centroids.Row(k) {
			e := float64(x[j]) - float64(v)
			s += e * e
		}
		if s < bestD {
			best, bestD = k, s
		}
	}
	return best
}

// PlanGates makes a gated basis's plan for slots sequences, all unadapted
// (-1) until the caller sets Plan.Cluster, whose K clusters take the given
// gates (K, R) host instead of the hyper-network's: a server's pool of
// gates tuned on each request's prompt (Plan.Gates of a tuned plan). A
// row's factors depend on its gates alone, so a row given the same gates
// in another plan gets the same factors. The caller frees the plan.
func (r *Runtime) PlanGates(slots int, gates []float32) (*Plan, error) {
	if r.basis == nil {
		return nil, fmt.Errorf("adapt: a plan of given gates needs a gated basis, not a %s adapter", r.Meta.Kind)
	}
	if len(r.Meta.Sites) > 0 {
		return nil, fmt.Errorf("adapt: a plan of given gates covers the head alone; this adapter also updates %v", r.Meta.Sites)
	}
	if slots < 1 {
		return nil, fmt.Errorf("adapt: plan for %d slots: need at least one", slots)
	}
	rank := r.basis.Factors().R
	if len(gates) == 0 || len(gates)%rank != 0 {
		return nil, fmt.Errorf("adapt: %d gate values are not (K, %d) rows with K >= 1", len(gates), rank)
	}
	for i, g := range gates {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			return nil, fmt.Errorf("adapt: gate %d of cluster %d is %g", i%rank, i/rank, g)
		}
	}
	p := &Plan{rt: r, Cluster: make([]int, slots), Alpha: r.Meta.Alpha, K: len(gates) / rank}
	for i := range p.Cluster {
		p.Cluster[i] = -1
	}
	var err error
	if p.packed, err = r.M.B.Alloc(gpu.F32, p.K, rank); err != nil {
		return nil, fmt.Errorf("adapt: gates of %d clusters: %w", p.K, err)
	}
	if err := r.M.B.Write(p.packed, gates); err != nil {
		p.Free()
		return nil, err
	}
	return p, p.gateBasis()
}

// Gates returns a gated basis plan's gates (K, R): as the hyper-network
// generated them, or as PlanOptions.Tune left them.
func (p *Plan) Gates() ([]float32, error) {
	if p.rt.basis == nil || p.packed == nil {
		return nil, fmt.Errorf("adapt: only a gated basis's plan has gates (this is a %s adapter's)", p.rt.Meta.Kind)
	}
	return p.rt.M.B.ReadF32(p.packed)
}
