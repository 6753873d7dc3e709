package adaptrun

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// Method kinds.
const (
	KindLoRA    = "lora"    // one static low-rank update, random batches
	KindExperts = "experts" // one update per domain, trained on its domain's windows (uses the labels)
	KindTable   = "table"   // one update per k-means cluster of the training windows (no labels)
	KindHyper   = "hyper"   // ChamaleonLLM: a hyper-network generates each cluster's update
)

// Method is one adapter to train, all of the output projection:
// logits = W h + alpha * B_c (A_c h).
type Method struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"`
	Rank     int     `json:"rank"`
	Features string  `json:"features,omitempty"` // hyper and table: what they cluster and condition on; experts: what routes; lora: what its gate reads (none: ungated only)
	Hidden   []int   `json:"hidden,omitempty"`   // hyper: hidden widths
	Dropout  float32 `json:"dropout,omitempty"`  // hyper: training dropout
	K        int     `json:"k,omitempty"`        // table: clusters (0: one per batch of windows, as the hyper-network's)
	// Recluster draws a new k-means seed every epoch (hyper), so that the
	// hyper-network sees other groupings of the same windows: more distinct
	// inputs than one fixed clustering gives.
	Recluster bool `json:"recluster,omitempty"`
	// Deep lists decoder sites (train.SiteQKV, SiteProj, SiteFC, SiteFC2)
	// updated at every layer besides the head: the update then sits inside
	// the decoder and training runs the frozen base's forward and backward
	// (DeepTrainer). Static for lora; generated for hyper, unless
	// DeepStatic, which makes them static LoRA with a generated head (the
	// paper's v3).
	Deep       []string `json:"deep,omitempty"`
	DeepStatic bool     `json:"deep_static,omitempty"`
	// StaticRank (hyper, head-only) adds a static LoRA pair of this rank
	// to the output projection, shared by every adapted row and trained
	// jointly with the hyper-network (ChamaleonLLM+ hybrid): the static
	// pair carries the shift common to the adaptation domains, the
	// generated update each cluster's own.
	StaticRank int `json:"static_rank,omitempty"`
	// Basis (hyper, head-only): the hyper-network generates Rank gates on
	// the components of a static pair of rank Rank instead of a pair of
	// its own (the gated basis: logits += alpha B diag(1 + g_k) A h).
	Basis bool `json:"basis,omitempty"`
	// Mixed (hyper): each training step takes random windows, each with
	// its own cluster's update (the centroid's), as a served batch mixes
	// clusters, instead of the windows of one cluster with their mean.
	Mixed bool `json:"mixed,omitempty"`
	// Staged (a gated basis) trains in two stages of TrainOpts.Epochs
	// each: the static pair alone with every gate held at zero (a LoRA,
	// trained as the LoRA baseline is), then the gate network alone on the
	// frozen pair. What the gates add is then over a trained LoRA of the
	// pair's rank.
	Staged bool `json:"staged,omitempty"`
	// Warm (a gated basis) also trains in two stages of TrainOpts.Epochs
	// each: the static pair alone with every gate held at zero (a LoRA, as
	// in Staged), then the pair and the gate network together. The gates
	// start from a trained LoRA and the pair keeps learning with them, so
	// the pair gets the epochs a LoRA's validation prefers while the gates
	// get half of them.
	Warm bool `json:"warm,omitempty"`
	// GateDrop (a gated basis) is the chance that a cluster of a training
	// step gets zero gates: its rows then train the static pair alone, as
	// a LoRA's would, and the gate network learns nothing from them. The
	// pair must be a good update by itself, and the gates learn what each
	// cluster adds to it (a middle way between joint and Staged training).
	GateDrop float64 `json:"gate_drop,omitempty"`
	// ClusterSize (hyper) is the number of training windows a training
	// cluster holds on average: k-means cuts the training windows into
	// ceil(n / ClusterSize) clusters, whose centroids the generated updates
	// are made from and online assignment serves (0: the batch size).
	// Larger clusters make fewer, smoother updates.
	ClusterSize int `json:"cluster_size,omitempty"`
	// GateDecay (a gated basis) is AdamW's decoupled weight decay on the
	// gate network's weight matrices alone (the pair and every bias are
	// not decayed). It shrinks the gates' dependence on the input: at a
	// large decay every cluster gets the same gates (the last layer's
	// bias), which makes the basis a LoRA of its pair's rank, so a decay
	// chosen on validation moves the basis between its LoRA and its free
	// gates.
	GateDecay float64 `json:"gate_decay,omitempty"`
	// Select (a mixed, head-only hyper method, not staged or warm-started)
	// trains as it is served under the selected grouping: from the second
	// epoch on, each training window trains under the update, among those
	// of its SelectNearest nearest centroids of the epoch's clustering,
	// that best predicts its own prompt with the network as it stands at
	// the epoch's start, instead of its k-means cluster's (hard EM: the
	// windows choose their updates, the updates learn from the windows
	// that chose them). The first epoch, whose gates or updates start
	// alike, keeps k-means' clusters.
	Select bool `json:"select,omitempty"`
}

// TrainOpts are the optimisation settings shared by every method.
type TrainOpts struct {
	Batch  int     `json:"batch"`  // windows a step (the cluster batch size)
	Epochs int     `json:"epochs"` // passes over the training windows
	LR     float64 `json:"lr"`     // peak; cosine decay to LR/10 after a short warm-up
	Seed   uint64  `json:"seed"`
	Alpha  float32 `json:"alpha"`
	// allRows trains a head-only adapter on a row for every position, as
	// before session 29, instead of the positions with a target alone (the
	// loss is a mean over those either way): the reference the scored rows
	// are tested against.
	allRows bool
}

// Trained is a trained adapter with what its groupings need.
type Trained struct {
	M       Method
	Adapter *adapt.Adapter // the file form: hyper-network inputs raw (standardisation folded in), centroids last
	// Cents are the training centroids in M.Features space: hyper and
	// table, the last training clustering's; experts, each domain's mean
	// training feature (for routing without labels).
	Cents   *cluster.Centroids
	Domains []string // the training set's domains (experts: expert i is Domains[i])
	Losses  []float64
	// Radius is the gate: a window whose feature lies farther (squared
	// distance) from every training centroid than this gets no update. It
	// is a quantile of the training windows' own distances (GateQuantile).
	Radius float64
	// Deep methods: the adapter also stays on the device (Adapter is its
	// file form) with the standardisation of its hyper-network's input,
	// for the evaluator's training-side forward.
	Deep    *DeepNet
	Mu, SD  []float64
	NParams int // trainable parameters
}

// GateQuantile sets each Trained.Radius: the share of training windows
// that lie within the radius of their nearest centroid.
const GateQuantile = 0.99

// radius is the q-quantile of the squared distances of the (N, dim)
// features f to their nearest centroid.
func radius(cents *cluster.Centroids, f []float32, q float64) float64 {
	n := len(f) / cents.C
	d := make([]float64, n)
	for i := range n {
		d[i] = adapt.NearestDist(cents, f[i*cents.C:(i+1)*cents.C])
	}
	slices.Sort(d)
	return d[min(n-1, int(q*float64(n)))]
}

// meanOf is the mean of the rows members of the (N, dim) matrix f.
func meanOf(f []float32, dim int, members []int) []float32 {
	out := make([]float32, dim)
	for _, m := range members {
		for j, v := range f[m*dim : (m+1)*dim] {
			out[j] += v
		}
	}
	for j := range out {
		out[j] /= float32(len(members))
	}
	return out
}

// kmeans clusters the (N, dim) features on the host (the plain-Go
// reference of the WGSL k-means), k at most N.
func kmeans(f []float32, dim, k int, seed uint64) (*cluster.Result, error) {
	return cluster.KMeansHost(f, dim, cluster.Config{K: min(k, len(f)/dim), Seed: seed})
}

// uniform gives every member cluster c.
func uniform(n, c int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = c
	}
	return out
}

// hyperConfig is m's hyper-network for a model of width c and vocabulary v.
func (m Method) hyperConfig(c, v int, alpha float32) adapt.HyperConfig {
	in, _ := adapt.FeatureDim(m.Features, c)
	return adapt.HyperConfig{C: c, V: v, In: in, Rank: m.Rank, Alpha: alpha, Hidden: m.Hidden, Dropout: m.Dropout, Basis: m.Basis}
}

// Params is the trainable-parameter count of m on a model of width c and
// vocabulary v, with k clusters or domains for a table or experts.
func (m Method) Params(c, v, k int) int {
	switch m.Kind {
	case KindHyper:
		n := 0
		for _, t := range adapt.HyperSpec(m.hyperConfig(c, v, 1)) {
			n += gpu.Numel(t.Shape)
		}
		if m.Basis {
			return n + m.Rank*(c+v)
		}
		return n + m.StaticRank*(c+v)
	case KindLoRA:
		return m.Rank * (c + v)
	}
	return k * m.Rank * (c + v)
}

// Train trains m on d (the adaptation domains' training windows) against
// the frozen base's output projection wte. progress, if set, is called
// after every step.
func Train(tb gpu.TrainBackend, wte gpu.Tensor, base adapt.Base, m Method, d *Set, o TrainOpts, progress func(step, steps int, loss float64)) (*Trained, error) {
	return train1(tb, wte, nil, base, m, d, o, progress)
}

// TrainDeep is Train for a method with updates inside the decoder, on dt's
// frozen copy of the base.
func TrainDeep(dt *DeepTrainer, base adapt.Base, m Method, d *Set, o TrainOpts, progress func(step, steps int, loss float64)) (*Trained, error) {
	return train1(dt.M.B, nil, dt, base, m, d, o, progress)
}

// (Over 80 lines: the method's checks, the network chosen by kind and the epoch
// loop share the network and optimiser.)
func train1(tb gpu.TrainBackend, wte gpu.Tensor, dt *DeepTrainer, base adapt.Base, m Method, d *Set, o TrainOpts, progress func(step, steps int, loss float64)) (*Trained, error) {
	if len(m.Deep) > 0 && dt == nil {
		return nil, fmt.Errorf("adaptrun: %s updates the decoder: train it with TrainDeep", m.Name)
	}
	if len(m.Deep) > 0 && m.Kind != KindLoRA && m.Kind != KindHyper {
		return nil, fmt.Errorf("adaptrun: %s: updates inside the decoder are for lora and hyper methods", m.Name)
	}
	if m.StaticRank != 0 && (m.Kind != KindHyper || len(m.Deep) > 0 || m.StaticRank < 0) {
		return nil, fmt.Errorf("adaptrun: %s: a static pair of rank %d is for head-only hyper methods", m.Name, m.StaticRank)
	}
	if m.Basis && (m.Kind != KindHyper || len(m.Deep) > 0 || m.StaticRank != 0) {
		return nil, fmt.Errorf("adaptrun: %s: a gated basis is a head-only hyper method with no static rank of its own", m.Name)
	}
	if (m.Staged || m.Warm) && !m.Basis || m.Staged && m.Warm {
		return nil, fmt.Errorf("adaptrun: %s: staged or warm-started training is for a gated basis, one of them", m.Name)
	}
	if m.Select && (m.Kind != KindHyper || !m.Mixed || len(m.Deep) > 0 || m.Staged || m.Warm) {
		return nil, fmt.Errorf("adaptrun: %s: training by selection is for a mixed, head-only hyper method, not staged or warm-started", m.Name)
	}
	if err := m.CheckGateDecay(); err != nil {
		return nil, err
	}
	c, v := base.Config.NEmbd, base.Config.VocabSize
	if o.Batch < 1 || o.Epochs < 1 || !(o.LR > 0) {
		return nil, fmt.Errorf("adaptrun: batch %d, epochs %d, lr %g: want positive values", o.Batch, o.Epochs, o.LR)
	}
	n := len(d.Windows)
	rng := rand.New(rand.NewPCG(o.Seed, 0xada))
	meta := adapt.Meta{Rank: m.Rank, Alpha: o.Alpha, Base: base}
	out := &Trained{M: m, Domains: d.Domains}
	var epochs [][]group
	var clusterings []clustering // a mixed hyper method's, per epoch (for Select)
	var host []model.HostTensor
	var mu, sd []float64
	switch m.Kind {
	case KindLoRA:
		meta.Kind, meta.Experts = adapt.KindLoRA, 1
		if m.Features != "" {
			// Centroids of its own training windows for the gated rows
			// only; training itself ignores them.
			dim, _ := adapt.FeatureDim(m.Features, c)
			res, err := kmeans(d.Feature(m.Features), dim, cluster.DefaultK(n, o.Batch), o.Seed)
			if err != nil {
				return nil, err
			}
			out.Cents = res.Centroids
		}
		for e := 0; e < o.Epochs; e++ {
			var gs []group
			for _, ch := range chunks(rng.Perm(n), o.Batch) {
				gs = append(gs, group{Members: ch, Cluster: uniform(len(ch), 0), K: 1})
			}
			epochs = append(epochs, gs)
		}
	case KindExperts:
		k := len(d.Domains)
		meta.Kind, meta.Experts = adapt.KindExperts, k
		by := make([][]int, k)
		for i, di := range d.Dom {
			by[di] = append(by[di], i)
		}
		for e := 0; e < o.Epochs; e++ {
			var gs []group
			for di, idx := range by {
				idx = slices.Clone(idx)
				rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
				for _, ch := range chunks(idx, o.Batch) {
					gs = append(gs, group{Members: ch, Cluster: uniform(len(ch), di), K: k})
				}
			}
			epochs = append(epochs, gs)
		}
		dim, _ := adapt.FeatureDim(m.Features, c)
		f := d.Feature(m.Features)
		cents := &cluster.Centroids{K: k, C: dim}
		for _, idx := range by {
			cents.Data = append(cents.Data, meanOf(f, dim, idx)...)
		}
		out.Cents = cents
	case KindTable:
		dim, _ := adapt.FeatureDim(m.Features, c)
		k := m.K
		if k <= 0 {
			k = cluster.DefaultK(n, o.Batch)
		}
		res, err := kmeans(d.Feature(m.Features), dim, k, o.Seed)
		if err != nil {
			return nil, err
		}
		k = res.Centroids.K
		meta.Kind, meta.Experts = adapt.KindExperts, k
		out.Cents = res.Centroids
		for e := 0; e < o.Epochs; e++ {
			var gs []group
			for _, b := range cluster.FormBatches(res.Assign, k, o.Batch) {
				gs = append(gs, group{Members: b.Seqs, Cluster: uniform(len(b.Seqs), b.Cluster), K: k})
			}
			epochs = append(epochs, gs)
		}
	case KindHyper:
		hc := m.hyperConfig(c, v, o.Alpha)
		if err := hc.Validate(); err != nil {
			return nil, err
		}
		meta.Kind, meta.Hidden, meta.Dropout, meta.Features = adapt.KindHyper, m.Hidden, m.Dropout, m.Features
		meta.StaticRank, meta.Basis = m.StaticRank, m.Basis
		if m.Basis {
			meta.StaticRank = m.Rank
		}
		dim := hc.InDim()
		f := d.Feature(m.Features)
		mu, sd = FeatureStats(f, dim)
		k := cluster.DefaultK(n, cmp.Or(m.ClusterSize, o.Batch))
		nEpochs := o.Epochs
		if m.Staged || m.Warm {
			nEpochs *= 2 // the pair's epochs, then the gates' (Warm: the gates' and the pair's)
		}
		for e := 0; e < nEpochs; e++ {
			seed := o.Seed
			if m.Recluster {
				seed = o.Seed*1000 + uint64(e)
			}
			if e == 0 || m.Recluster {
				res, err := kmeans(f, dim, k, seed)
				if err != nil {
					return nil, err
				}
				out.Cents = res.Centroids
				if m.Mixed {
					perm := rng.Perm(n)
					epochs = append(epochs, mixedGroups(res, perm, o.Batch, mu, sd))
					clusterings = append(clusterings, clustering{res, perm})
					continue
				}
				var gs []group
				for _, b := range cluster.FormBatches(res.Assign, res.Centroids.K, o.Batch) {
					gs = append(gs, group{Members: b.Seqs, Cluster: uniform(len(b.Seqs), 0), K: 1,
						Means: Standardize(meanOf(f, dim, b.Seqs), mu, sd)})
				}
				epochs = append(epochs, gs)
			} else {
				epochs = append(epochs, epochs[0])
			}
		}
		meta.Centroids = out.Cents.K
		host = adapt.InitHyper(hc, o.Seed)
		// Start from a zero update, as LoRA does: the B part of the last
		// layer (weights and bias) is zero.
		last := len(host) - 2
		rc := hc.Rank * hc.C
		if m.Basis {
			rc = 0 // every gate starts at zero: the static LoRA
		}
		clear(host[last].Data[rc*host[last].Shape[1]:])
		clear(host[last+1].Data[rc:])
		if meta.StaticRank > 0 {
			// The static pair starts as LoRA does: A random, B zero.
			pair := adapt.InitStatic(1, meta.StaticRank, c, v, o.Seed)
			pair[0].Name, pair[1].Name = adapt.StaticPairA, adapt.StaticPairB
			host = append(host, pair...)
		}
	default:
		return nil, fmt.Errorf("adaptrun: unknown method kind %q", m.Kind)
	}
	if out.Cents != nil {
		out.Radius = radius(out.Cents, d.Feature(m.Features), GateQuantile)
	}
	if dt != nil {
		return out, trainDeep(dt, m, meta, d, o, epochs, rng, out, mu, sd, progress)
	}
	if host == nil {
		host = adapt.InitStatic(meta.Experts, meta.Rank, c, v, o.Seed)
	}
	net, err := NewAdapterNet(tb, wte, meta, host)
	if err != nil {
		return nil, err
	}
	defer net.Free()
	var reassign func(int) ([]group, error)
	if m.Select {
		reassign = selectedEpochs(net, m, d, o.Batch, clusterings, mu, sd)
	}
	if err := trainHead(tb, net, m, d, o, epochs, reassign, rng, out, progress); err != nil {
		return nil, err
	}
	ts, err := net.Host()
	if err != nil {
		return nil, err
	}
	if mu != nil {
		FoldStandardize(ts[0].Data, ts[1].Data, mu, sd)
		ts = append(ts, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{out.Cents.K, out.Cents.C}, Data: out.Cents.Data})
	}
	out.Adapter = &adapt.Adapter{Meta: meta, Tensors: ts}
	if err := out.Adapter.Validate(); err != nil {
		return nil, err
	}
	out.NParams = paramCount(ts)
	return out, nil
}

func paramCount(ts []model.HostTensor) int {
	n := 0
	for _, t := range ts {
		if t.Name != adapt.CentroidsTensor {
			n += len(t.Data)
		}
	}
	return n
}

// trainDeep trains a deep adapter over the epochs' groups into out.
func trainDeep(dt *DeepTrainer, m Method, meta adapt.Meta, d *Set, o TrainOpts, epochs [][]group, rng *rand.Rand, out *Trained, mu, sd []float64, progress func(step, steps int, loss float64)) error {
	net, err := NewDeepNet(dt.M.B, dt.M.Cfg, m, o.Alpha, o.Seed)
	if err != nil {
		return err
	}
	opt, err := train.NewAdamWFor(dt.M.B, net.Params(), 0.9, 0.999, 1e-8, 0, 1)
	if err != nil {
		net.Free()
		return err
	}
	defer opt.Free()
	steps := 0
	for _, gs := range epochs {
		steps += len(gs)
	}
	sched := train.Schedule{LR: o.LR, MinLR: o.LR / 10, Warmup: min(20, steps/10), Steps: steps}
	for _, gs := range epochs {
		for _, gi := range rng.Perm(len(gs)) {
			step := len(out.Losses) + 1
			if step%20 == 1 {
				dt.zeroGrads()
			}
			ls, err := dt.step(net, d, gs[gi], opt, sched.At(step))
			if err != nil {
				net.Free()
				return fmt.Errorf("adaptrun: %s: %w", m.Name, err)
			}
			var sum float64
			n := 0
			for _, wi := range gs[gi].Members {
				n += d.Scored(wi)
			}
			for _, l := range ls {
				sum += float64(l)
			}
			loss := sum / float64(max(n, 1))
			if loss != loss {
				net.Free()
				return fmt.Errorf("adaptrun: %s: non-finite loss at step %d", m.Name, step)
			}
			out.Losses = append(out.Losses, loss)
			if progress != nil {
				progress(step, steps, loss)
			}
		}
	}
	net.endStep()
	out.Deep, out.Mu, out.SD = net, mu, sd
	for _, p := range net.Params() {
		out.NParams += gpu.Numel(p.Shape())
	}
	if out.Adapter, err = net.Adapter(m, meta, mu, sd, out.Cents); err != nil {
		return fmt.Errorf("adaptrun: %s: file form: %w", m.Name, err)
	}
	return nil
}
