package adapt

import (
	"fmt"
	"os"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Runtime is an adapter loaded on a model's backend, ready to adapt the
// logits of a batch of sequences: the inference half of the method.
//
//	rt, _ := adapt.NewRuntime(m, a)      // a from adapt.Load
//	plan, _ := rt.Plan(prompts, adapt.PlanOptions{Mode: adapt.ModeBatch})
//	gens, _ := m.Generate(tok, prompts, model.GenerateOptions{Adapter: plan.Adapter(nil), ...})
type Runtime struct {
	Meta      Meta
	M         *model.Model
	Centroids *cluster.Centroids // training centroids (hyper adapters that store them), for ModeOnline
	// Gate is the adapter's stored gate (nil: none): sequences it closes
	// on keep the base model (cluster -1) in every plan.
	Gate *Gate
	// DeviceKMeans runs every plan's k-means on the device, however small
	// the batch (see HostKMeansMax).
	DeviceKMeans bool
	// SeparateSiteExpand runs each adapted decoder site as the forward's
	// MatMul and then the update's expand (model.Pass.Linear), never the
	// matmul with the expand as its epilogue (Ops.SiteMatMul): the
	// fallback, for A/B benchmarks and tests. Both give the same bits.
	// NewRuntime sets it where env CHAMELEON_SEPARATE_EXPAND=1 (e.g. for
	// `chameleon bench --adapter` on a lent GPU).
	SeparateSiteExpand bool
	// CheckTokens is how many of a prompt's last next-token predictions
	// the self-check scores at most: 0 DefaultCheckTokens, negative all.
	CheckTokens int
	// FullCheck scores every checked prediction in one stage, ignoring
	// the file's staged self-check (Meta.CheckStride): for A/B benchmarks
	// and tests.
	FullCheck bool
	ops       Ops
	cops      cluster.Ops
	hyper     *HyperNet
	static    *Static
	pair      *Static // a hybrid hyper adapter's static pair (Meta.StaticRank), K = 1
	basis     *Static // a gated basis's static pair (Meta.Basis), gated per cluster, K = 1
	// basisB is the gated basis's one B as a (V, R) matrix, the layout
	// MatMul takes its weights in: the self-check's expand of every
	// cluster's rows as one matmul (Plan.checkScores). Nil without a basis.
	basisB gpu.Tensor
	sites  map[model.Site]*siteUpdate // block sites (Meta.Sites at every layer)
	// noSharedPass makes a self-checked plan run its three forwards apart
	// (features, base loss, adapted loss) instead of basePass: for tests
	// that compare the two.
	noSharedPass bool
	// rowsOnHost makes a plan made in the prefill read its prompts' rows
	// back as a tuned plan does (hostRows), tuned or not: for tests that
	// weigh the transfers the device path saves.
	rowsOnHost bool
	// centroidCheck is checkCentroids' plan of the training centroids
	// (nil until the first online self-check; freed by Free).
	centroidCheck *Plan
	// checkRows counts the rows the self-check projects from a prefill's
	// hidden states (Plan.checkScores), for tests.
	checkRows int
}

// NewRuntime checks that a was made for m (the base fingerprint) and puts
// its parameters on m's backend.
func NewRuntime(m *model.Model, a *Adapter) (*Runtime, error) {
	base, err := BaseOfModel(m)
	if err != nil {
		return nil, err
	}
	if err := a.Meta.Base.Match(base); err != nil {
		return nil, err
	}
	cops, err := cluster.OpsFor(m.B)
	if err != nil {
		return nil, err
	}
	r := &Runtime{Meta: a.Meta, M: m, ops: New(m.B), cops: cops, SeparateSiteExpand: os.Getenv("CHAMELEON_SEPARATE_EXPAND") == "1"}
	switch a.Meta.Kind {
	case KindHyper:
		r.hyper, err = a.UploadHyper(m.B)
		if err == nil {
			r.pair, err = a.UploadStaticPair(m.B)
		}
		if a.Meta.Basis {
			r.pair, r.basis = nil, r.pair
			if err == nil {
				r.basisB, err = uploadBasisB(m.B, a)
			}
		}
		r.Centroids = a.TrainingCentroids()
		r.Gate = a.Gate()
	default:
		r.static, err = a.UploadStatic(m.B)
		r.Centroids = a.TrainingCentroids() // a gated LoRA's
		r.Gate = a.Gate()
	}
	if err == nil {
		r.sites, err = a.uploadSites(m.B, a.Meta.headTensors())
	}
	if err != nil {
		r.Free()
		return nil, err
	}
	return r, nil
}

// Free releases the adapter's device tensors.
func (r *Runtime) Free() {
	if r.hyper != nil {
		r.hyper.Free(r.M.B)
	}
	if r.static != nil {
		r.static.Free(r.M.B)
	}
	for _, p := range []*Static{r.pair, r.basis} {
		if p != nil {
			p.Free(r.M.B)
		}
	}
	if r.basisB != nil {
		r.M.B.Free(r.basisB)
		r.basisB = nil
	}
	if r.centroidCheck != nil {
		r.centroidCheck.Free()
		r.centroidCheck = nil
	}
	for _, u := range r.sites {
		u.free(r.M.B)
	}
	r.hyper, r.static, r.pair, r.basis, r.sites = nil, nil, nil, nil, nil
}

// Mode is how a plan groups its sequences.
type Mode string

const (
	// ModeBatch clusters the sequences themselves: k-means on their
	// features with K = PlanOptions.K, or ceil(N / BatchSize) (the paper).
	ModeBatch Mode = "batch"
	// ModeOnline assigns each sequence to the nearest training centroid
	// (hyper adapters that store centroids).
	ModeOnline Mode = "online"
	// ModeOne puts every sequence in one cluster (a randomly formed batch
	// is adapted as a whole; the "no clustering" ablation).
	ModeOne Mode = "one"
)

// DefaultBatchSize is the batch size that sets the default number of
// clusters, ceil(N / DefaultBatchSize).
const DefaultBatchSize = 16

// PlanOptions configure Runtime.Plan.
type PlanOptions struct {
	Mode      Mode   // hyper adapters: how to group (default ModeBatch)
	K         int    // ModeBatch: clusters (0: ceil(N / BatchSize), at most N)
	BatchSize int    // 0: DefaultBatchSize
	Seed      uint64 // k-means++ seed
	// Experts (experts adapters): each sequence's expert, e.g. its domain
	// (the oracle); -1 leaves a sequence unadapted.
	Experts []int
	// Ungated adapts every sequence even where the adapter's gate or its
	// self-check would keep it at the base model.
	Ungated bool
	// Tune (a gated basis only) tunes each cluster's generated gates on
	// the plan's own sequences before making its factors (tune.go); the
	// self-check, if any, decides with the untuned gates first.
	Tune Tune
}

// Plan is the adaptation of a set of sequences: the cluster of each and
// the low-rank factors of every cluster, on the device.
type Plan struct {
	// Cluster is per sequence (or serving slot) its cluster (or expert)
	// in [0, K), -1 for none. Read it freely; change it with SetClusters,
	// which checks the range.
	Cluster  []int
	K        int       // clusters
	Features []float32 // (N, C) the sequences' features (hyper adapters, and a gated LoRA's: its gate read them), host copy
	Means    []float32 // (K, C) the hyper-network's input per cluster
	Alpha    float32
	factors  Factors
	packed   gpu.Tensor // hyper output (K, OutDim); nil for static adapters
	gated    gpu.Tensor // a gated basis's per-cluster A_k (K, R, C)
	// siteF are the block sites' factors; sitePacked hold the generated ones.
	siteF      map[model.Site]Factors
	sitePacked []gpu.Tensor
	cache      *planCache // EnableCache's token cache (nil: none)
	rt         *Runtime
}

// Plan groups seqs (token ids, e.g. prompts) and makes each group's
// factors: for a hyper adapter, features on the device, k-means (or the
// nearest training centroid), and the hyper-network on each cluster's mean
// feature; for static LoRA every sequence uses the one pair; for experts,
// o.Experts picks. The caller frees the plan.
//
// (Over 80 lines: the plan's steps in order (features, grouping, gate and
// self-check, factors), each using the previous step's results.)
func (r *Runtime) Plan(seqs [][]int32, o PlanOptions) (*Plan, error) {
	n := len(seqs)
	if err := r.checkPlan(n, o); err != nil {
		return nil, err
	}
	p := &Plan{rt: r, Cluster: make([]int, n), Alpha: r.Meta.Alpha}
	switch r.Meta.Kind {
	case KindLoRA:
		p.K, p.factors = 1, r.static.Factors()
		if err := p.generateSites(nil); err != nil {
			return p, err
		}
		if !o.Ungated {
			cl, feats, err := r.staticClusters(seqs)
			if err != nil {
				p.Free()
				return nil, err
			}
			copy(p.Cluster, cl)
			p.Features = feats // a gated LoRA's: what a cache's clusters come from
		}
		return p, nil
	case KindExperts:
		if len(o.Experts) != n {
			return nil, fmt.Errorf("adapt: plan: an experts adapter needs each sequence's expert (%d given for %d sequences)", len(o.Experts), n)
		}
		for i, e := range o.Experts {
			if e < -1 || e >= r.Meta.Experts {
				return nil, fmt.Errorf("adapt: plan: sequence %d asks for expert %d of %d (-1: none)", i, e, r.Meta.Experts)
			}
			p.Cluster[i] = e
		}
		p.K, p.factors = r.Meta.Experts, r.static.Factors()
		return p, nil
	}
	pp, err := r.checkPass(seqs, !o.Ungated)
	if err != nil {
		return nil, err
	}
	return r.hyperPlan(p, seqs, o, pp)
}

// checkPlan refuses a plan of n sequences under o that Plan cannot make.
func (r *Runtime) checkPlan(n int, o PlanOptions) error {
	if n == 0 {
		return fmt.Errorf("adapt: plan: no sequences")
	}
	if err := o.Tune.Check(); err != nil {
		return fmt.Errorf("adapt: plan: %w", err)
	}
	if o.Tune.Steps > 0 && !r.Meta.Basis {
		return fmt.Errorf("adapt: plan: tuning is for a gated basis's gates, not a %s adapter", r.Meta.Kind)
	}
	return nil
}

// hyperPlan makes hyper adapter plan p of seqs from the base model's pass
// over them pp (nil: none; features and the self-check then run their own
// forwards): features, grouping, gate and self-check, factors, tuning.
func (r *Runtime) hyperPlan(p *Plan, seqs [][]int32, o PlanOptions, pp *promptPass) (*Plan, error) {
	n := len(seqs)
	ft, feats, err := r.featuresWith(seqs, pp.hiddenMeans())
	if err != nil {
		return nil, err
	}
	defer r.cops.Free(ft)
	p.Features = feats
	c := r.FeatureWidth()
	bs := o.BatchSize
	if bs <= 0 {
		bs = DefaultBatchSize
	}
	var near [][]int // Meta.Select's candidates (online plans)
	switch o.Mode {
	case ModeBatch, "":
		k := o.K
		if k <= 0 {
			k = cluster.DefaultK(n, bs)
		}
		k = min(k, n)
		res, err := r.kmeans(ft, p.Features, cluster.Config{K: k, Seed: o.Seed})
		if err != nil {
			return nil, err
		}
		p.Cluster, p.K = res.Assign, k
		p.Means = MeanFeatures(p.Features, p.Cluster, k, c)
	case ModeOnline:
		if r.Centroids == nil {
			return nil, fmt.Errorf("adapt: plan: online assignment needs training centroids; this adapter stores none")
		}
		as, err := r.Centroids.AssignOn(r.cops, ft)
		if err != nil {
			return nil, err
		}
		p.Cluster, p.K = as, r.Centroids.K
		p.Means = r.Centroids.Data
		if r.Meta.Select > 1 && !o.Ungated && r.Meta.SelfCheck {
			if near, err = r.Centroids.Nearest(p.Features, r.Meta.Select); err != nil {
				return nil, err
			}
		}
	case ModeOne:
		p.K = 1
		p.Means = MeanFeatures(p.Features, p.Cluster, 1, c)
	default:
		return nil, fmt.Errorf("adapt: plan: unknown mode %q (batch, online or one)", o.Mode)
	}
	if !o.Ungated {
		if err := r.closeGate(p.Cluster, seqs, p.Features, pp.hiddenMeans()); err != nil {
			return nil, err
		}
	}
	if err := p.generate(); err != nil {
		return nil, err
	}
	if !o.Ungated && r.Meta.SelfCheck {
		check := p.selfCheck
		if near != nil {
			check = func(seqs [][]int32, pp *promptPass) ([][]float32, error) { return p.selectCheck(seqs, pp, near) }
		}
		if _, err := check(seqs, pp); err != nil {
			p.Free()
			return nil, err
		}
	}
	if o.Tune.Steps > 0 {
		if err := p.tune(seqs, pp, o.Tune); err != nil {
			p.Free()
			return nil, err
		}
	}
	return p, nil
}

// HostKMeansMax is the largest batch whose k-means runs on the host (the
// plain-Go reference of the WGSL kernels, same algorithm and seed) rather
// than on the device: for a serving or generation batch of a few dozen
// inputs, each Lloyd iteration's device round trip costs more than the
// whole clustering, and it was most of the adaptation's overhead (9 ms of
// a 10 ms plan on an H100). Training-scale clustering (thousands of
// windows) stays on the device. Runtime.DeviceKMeans forces the device.
const HostKMeansMax = 512

// kmeans clusters the features (on the device as ft, on the host as
// feats) where it is cheapest.
func (r *Runtime) kmeans(ft gpu.Tensor, feats []float32, cfg cluster.Config) (*cluster.Result, error) {
	n := ft.Shape()[0]
	if r.DeviceKMeans || n > HostKMeansMax {
		return cluster.KMeans(r.cops, ft, cfg)
	}
	return cluster.KMeansHost(feats, ft.Shape()[1], cfg)
}

// generate runs the hyper-network on the plan's cluster means: the output
// projection's factors and every generated block site's.
func (p *Plan) generate() error {
	b := p.rt.M.B
	h := p.rt.hyper
	in, err := b.Alloc(gpu.F32, p.K, h.Cfg.InDim())
	if err != nil {
		return err
	}
	defer b.Free(in)
	if err := b.Write(in, p.Means); err != nil {
		return err
	}
	if p.packed, err = b.Alloc(gpu.F32, p.K, h.Cfg.OutDim()); err != nil {
		return fmt.Errorf("adapt: hyper-network output for %d clusters: %w", p.K, err)
	}
	z, tmp, err := h.hidden(p.rt.ops, in, nil)
	defer freeAll(b, tmp)
	if err == nil {
		last := h.Layers[len(h.Layers)-1]
		b.MatMul(p.packed, z, last.W, last.Bias)
		err = p.generateSites(z)
	}
	if err != nil {
		p.Free()
		return err
	}
	if p.rt.basis != nil {
		return p.gateBasis()
	}
	p.factors = h.Factors(p.packed)
	return nil
}

// gateBasis makes a gated basis's factors from the generated gates
// (p.packed, (K, R)): A_k = diag(1 + g_k) A per cluster and the one B.
func (p *Plan) gateBasis() error {
	bs := p.rt.basis
	l := bs.Factors().Layout
	var err error
	if p.gated, err = p.rt.M.B.Alloc(gpu.F32, p.K, l.R, l.C); err != nil {
		p.Free()
		return fmt.Errorf("adapt: gated basis for %d clusters: %w", p.K, err)
	}
	p.rt.ops.GateFactors(p.gated, bs.A, p.packed)
	l.K, l.BStride = p.K, 0
	p.factors = Factors{Layout: l, A: p.gated, B: bs.B}
	return nil
}

// SetClusters gives the plan's sequences (or serving slots, one per row
// of a ragged batch) their clusters: cl[i] in [0, K) uses that cluster's
// factors, -1 the base model. The number of sequences becomes len(cl). cl
// is copied (into Cluster's own storage when it has room, so a server can
// set every step without allocating). On an error, naming the first entry
// out of range, Cluster is left as it was.
func (p *Plan) SetClusters(cl []int) error {
	for i, c := range cl {
		if c < -1 || c >= p.K {
			return fmt.Errorf("adapt: plan: sequence %d gets cluster %d, but the plan has %d (-1: none)", i, c, p.K)
		}
	}
	p.Cluster = append(p.Cluster[:0], cl...)
	return nil
}

// Free releases the plan's generated factors.
func (p *Plan) Free() {
	for _, t := range []*gpu.Tensor{&p.packed, &p.gated} {
		if *t != nil {
			p.rt.M.B.Free(*t)
			*t = nil
		}
	}
	freeAll(p.rt.M.B, p.sitePacked)
	p.sitePacked, p.siteF = nil, nil
	if p.cache != nil {
		p.cache.free(p.rt.M.B)
		p.cache = nil
	}
}

// closeGate sets cluster -1 (the base model) for every sequence of seqs
// that the gate keeps out: it reads feats (the adapter's features, rows per
// sequence) or, for a gate with features of its own, those computed from
// seqs and hid (the hidden-state means; nil: run the forward).
func (r *Runtime) closeGate(cluster []int, seqs [][]int32, feats, hid []float32) error {
	if r.Gate == nil || len(cluster) == 0 {
		return nil
	}
	gf, err := r.gateFeatures(seqs, feats, hid)
	if err != nil {
		return err
	}
	d := len(gf) / len(cluster)
	for i := range cluster {
		if r.Gate.Closed(r.Centroids, gf[i*d:(i+1)*d]) {
			cluster[i] = -1
		}
	}
	return nil
}
