package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// AdapterConfig configures TrainAdapter.
type AdapterConfig struct {
	Meta        adapt.Meta // Kind, Rank, Alpha; Hidden and Dropout (hyper); Experts (experts); Base
	Batch       int        // sequences per batch (the cluster batch size)
	Epochs      int
	LR, MinLR   float64
	Warmup      int
	WeightDecay float64
	ClipNorm    float64
	Seed        uint64
}

// AdapterData is what adapters train and evaluate on: windows, the base
// model's hidden states of each, and each window's feature (mean of its
// token embeddings, L2-normalised; the clustering input).
type AdapterData struct {
	Windows  []Window
	Hidden   [][]float32 // per window: T*C
	Features []float32   // (N, C)
	C        int
	Domains  []string
}

// NewAdapterData computes the hidden states and features of windows on m.
func NewAdapterData(m *model.Model, ws []Window, domains []string, batch int, progress func(done int)) (*AdapterData, error) {
	hs, err := HiddenStates(m, ws, batch, progress)
	if err != nil {
		return nil, err
	}
	ops, err := cluster.OpsFor(m.B)
	if err != nil {
		return nil, err
	}
	seqs := make([][]int32, len(ws))
	for i, w := range ws {
		seqs[i] = w.Tokens
	}
	ft, err := cluster.Features(ops, m.W.Wte, seqs)
	if err != nil {
		return nil, err
	}
	defer ops.Free(ft)
	f, err := ops.ReadF32(ft)
	if err != nil {
		return nil, err
	}
	return &AdapterData{Windows: ws, Hidden: hs, Features: f, C: m.Cfg.NEmbd, Domains: domains}, nil
}

// Group is a batch of windows adapted together: members[i]'s rows use
// cluster Cluster[i] in [0, K) (or -1: not adapted); a hyper adapter gets
// Means (K, C) as its input.
type Group struct {
	Members []int
	Cluster []int
	K       int
	Means   []float32
}

// batch assembles a group's rows.
func (d *AdapterData) batch(g Group) AdapterBatch {
	var bt AdapterBatch
	for i, wi := range g.Members {
		w := d.Windows[wi]
		bt.H = append(bt.H, d.Hidden[wi]...)
		bt.Targets = append(bt.Targets, w.Targets...)
		for range w.Targets {
			bt.Cluster = append(bt.Cluster, int32(g.Cluster[i]))
		}
	}
	bt.K, bt.Means = g.K, g.Means
	return bt
}

// single is a group of members all in cluster 0 whose hyper-network input
// is their mean feature (or means, when given).
func (d *AdapterData) single(members []int, means []float32) Group {
	g := Group{Members: members, Cluster: make([]int, len(members)), K: 1, Means: means}
	if means == nil { // the members' mean feature (g.Cluster is all 0)
		f := make([]float32, 0, len(members)*d.C)
		for _, m := range members {
			f = append(f, d.Features[m*d.C:(m+1)*d.C]...)
		}
		g.Means = adapt.MeanFeatures(f, g.Cluster, 1, d.C)
	}
	return g
}

// Chunks cuts idx into consecutive pieces of at most size.
func Chunks(idx []int, size int) [][]int {
	var out [][]int
	for len(idx) > 0 {
		n := min(size, len(idx))
		out = append(out, idx[:n:n])
		idx = idx[n:]
	}
	return out
}

// ClusteredGroups clusters the windows' features with k-means (k =
// ceil(N / batch), the paper's default) and forms batches of one cluster
// each (cluster.FormBatches), each with its members' mean feature as the
// hyper-network input. It returns the groups and the k-means result.
func (d *AdapterData) ClusteredGroups(b gpu.Backend, batch int, seed uint64) ([]Group, *cluster.Result, error) {
	ops, err := cluster.OpsFor(b)
	if err != nil {
		return nil, nil, err
	}
	x, err := ops.Alloc(gpu.F32, len(d.Windows), d.C)
	if err != nil {
		return nil, nil, err
	}
	defer ops.Free(x)
	if err := ops.Write(x, d.Features); err != nil {
		return nil, nil, err
	}
	bs, res, err := cluster.ClusterBatches(ops, x, batch, seed)
	if err != nil {
		return nil, nil, err
	}
	var out []Group
	for _, bb := range bs {
		out = append(out, d.single(bb.Seqs, nil))
	}
	return out, res, nil
}

// OnlineGroups assigns every window to its nearest centroid and batches
// each centroid's windows; the hyper-network input is the centroid.
func (d *AdapterData) OnlineGroups(b gpu.Backend, cents *cluster.Centroids, batch int) ([]Group, error) {
	as, err := cents.Assign(d.Features)
	if err != nil {
		return nil, err
	}
	var out []Group
	for _, bb := range cluster.FormBatches(as, cents.K, batch) {
		out = append(out, d.single(bb.Seqs, append([]float32(nil), cents.Row(bb.Cluster)...)))
	}
	return out, nil
}

// RandomGroups batches the windows in a seeded random order (mixed
// domains), each batch adapted as one group (its mean feature).
func (d *AdapterData) RandomGroups(batch int, seed uint64) []Group {
	idx := rand.New(rand.NewPCG(seed, 7)).Perm(len(d.Windows))
	var out []Group
	for _, c := range Chunks(idx, batch) {
		out = append(out, d.single(c, nil))
	}
	return out
}

// DomainGroups batches each domain's windows separately with the domain as
// the cluster (the experts oracle).
func (d *AdapterData) DomainGroups(batch int) []Group {
	by := make([][]int, len(d.Domains))
	for i, w := range d.Windows {
		by[w.Domain] = append(by[w.Domain], i)
	}
	var out []Group
	for dom, idx := range by {
		for _, c := range Chunks(idx, batch) {
			g := Group{Members: c, Cluster: make([]int, len(c)), K: len(d.Domains)}
			for i := range g.Cluster {
				g.Cluster[i] = dom
			}
			out = append(out, g)
		}
	}
	return out
}

// TrainProgress is reported after every adapter training step.
type TrainProgress struct {
	Step, Steps int
	Loss, Norm  float64
	LR          float64
}

// TrainAdapter trains an adapter of cfg.Meta.Kind on d with the base
// model's output projection wte, and returns it (with the training
// centroids for a hyper adapter) and the loss of every step. Batches:
//   - hyper: the windows clustered by k-means, one cluster per batch (the
//     paper's offline setting), the cluster's mean feature as input;
//   - lora: random batches;
//   - experts: each domain's windows, the domain as the expert.
//
// Batch order is reshuffled every epoch (seeded).
func TrainAdapter(b gpu.TrainBackend, wte gpu.Tensor, cfg AdapterConfig, d *AdapterData, progress func(TrainProgress)) (*adapt.Adapter, []float64, error) {
	meta := cfg.Meta
	c := meta.Base.Config
	var host []model.HostTensor
	var groups []Group
	var cents *cluster.Centroids
	var mu, sd []float64 // hyper: input standardisation
	switch meta.Kind {
	case adapt.KindHyper:
		hc := meta.Hyper()
		host = adapt.InitHyper(hc, cfg.Seed)
		// Start from a zero update, as LoRA does: the B part of the last
		// layer (weights and bias) is zero, so B_c = 0 for every input.
		last := len(host) - 2
		rc := hc.Rank * hc.C
		clear(host[last].Data[rc*host[last].Shape[1]:])
		clear(host[last+1].Data[rc:])
		gs, res, err := d.ClusteredGroups(b, cfg.Batch, cfg.Seed)
		if err != nil {
			return nil, nil, err
		}
		groups, cents = gs, res.Centroids
		// Train on standardised inputs: cluster means of L2-normalised
		// features share most of their direction, so raw they vary little
		// and the ReLUs die; each channel is shifted and scaled by the
		// training features' mean and spread, and the transform is folded
		// into the first layer when the adapter is saved (the file takes
		// raw means, as at inference).
		mu, sd = FeatureStats(d.Features, d.C)
		for i := range groups {
			groups[i].Means = Standardize(groups[i].Means, mu, sd)
		}
	case adapt.KindLoRA, adapt.KindExperts:
		if meta.Kind == adapt.KindExperts {
			meta.Experts = len(d.Domains)
			groups = d.DomainGroups(cfg.Batch)
		} else {
			meta.Experts = 1
			groups = d.RandomGroups(cfg.Batch, cfg.Seed)
		}
		host = adapt.InitStatic(meta.Experts, meta.Rank, c.NEmbd, c.VocabSize, cfg.Seed)
	default:
		return nil, nil, fmt.Errorf("train: unknown adapter kind %q", meta.Kind)
	}
	if cents != nil {
		meta.Centroids = cents.K
	}
	if err := meta.Validate(); err != nil {
		return nil, nil, fmt.Errorf("train: adapter: %w", err)
	}
	n, err := NewAdapterNet(b, wte, meta, host)
	if err != nil {
		return nil, nil, err
	}
	defer n.Free()
	opt, err := NewAdamWFor(b, n.Params(), 0.9, 0.999, 1e-8, float32(cfg.WeightDecay), float32(cfg.ClipNorm))
	if err != nil {
		return nil, nil, err
	}
	defer opt.Free()
	steps := cfg.Epochs * len(groups)
	tr := &AdapterTrainer{N: n, Opt: opt, Sched: Schedule{LR: cfg.LR, MinLR: cfg.MinLR, Warmup: cfg.Warmup, Steps: steps},
		Rng: rand.New(rand.NewPCG(cfg.Seed, 11))}
	order := rand.New(rand.NewPCG(cfg.Seed, 13))
	var losses []float64
	for e := 0; e < cfg.Epochs; e++ {
		perm := order.Perm(len(groups))
		for _, gi := range perm {
			loss, norm, err := tr.Step(d.batch(groups[gi]))
			if err != nil {
				return nil, losses, err
			}
			losses = append(losses, loss)
			if progress != nil {
				progress(TrainProgress{Step: len(losses), Steps: steps, Loss: loss, Norm: norm, LR: tr.Sched.At(len(losses))})
			}
		}
	}
	ts, err := n.Host()
	if err != nil {
		return nil, nil, err
	}
	if mu != nil {
		FoldStandardize(ts[0].Data, ts[1].Data, mu, sd)
	}
	if cents != nil {
		ts = append(ts, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{cents.K, cents.C}, Data: cents.Data})
	}
	a := &adapt.Adapter{Meta: meta, Tensors: ts}
	if err := a.Validate(); err != nil {
		return nil, nil, err
	}
	return a, losses, nil
}

// DomainLoss is a mean next-token loss per domain and overall.
type DomainLoss struct {
	Sum    []float64 // per domain: summed nats
	Count  []int     // per domain: scored tokens
	Domain []string
}

// Mean is the per-domain mean loss (nats/token) and, last, the overall
// mean (every token weighted equally).
func (l DomainLoss) Mean() []float64 {
	out := make([]float64, len(l.Sum)+1)
	var s float64
	var n int
	for i := range l.Sum {
		out[i] = l.Sum[i] / float64(max(l.Count[i], 1))
		s += l.Sum[i]
		n += l.Count[i]
	}
	out[len(l.Sum)] = s / float64(max(n, 1))
	return out
}

// EvalGroups scores every group with n (nil cluster ids: -1 = the base
// model) and sums the losses per domain. n may be any adapter of the
// model when base is true (its update is not applied).
func EvalGroups(n *AdapterNet, d *AdapterData, groups []Group, base bool, progress func(done int)) (DomainLoss, error) {
	out := DomainLoss{Sum: make([]float64, len(d.Domains)), Count: make([]int, len(d.Domains)), Domain: d.Domains}
	for gi, g := range groups {
		if base {
			g.Cluster = make([]int, len(g.Members))
			for i := range g.Cluster {
				g.Cluster[i] = -1
			}
			if g.Means == nil && n.hyper != nil {
				g.K, g.Means = 1, make([]float32, d.C)
			}
		}
		bt := d.batch(g)
		if n.static != nil && !base && g.K != n.Meta.Experts {
			return out, fmt.Errorf("train: eval: groups of %d clusters for a static adapter of %d", g.K, n.Meta.Experts)
		}
		ls, err := n.Losses(bt)
		if err != nil {
			return out, err
		}
		row := 0
		for _, wi := range g.Members {
			w := d.Windows[wi]
			for j := range w.Targets {
				if w.Targets[j] >= 0 {
					out.Sum[w.Domain] += float64(ls[row+j])
					out.Count[w.Domain]++
				}
			}
			row += len(w.Targets)
		}
		if progress != nil {
			progress(gi + 1)
		}
	}
	for _, s := range out.Sum {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return out, fmt.Errorf("train: eval: non-finite loss")
		}
	}
	return out, nil
}

// FeatureStats is the per-channel mean and standard deviation of (N, c)
// features; a channel's deviation is floored at 1e-3 of the largest.
func FeatureStats(f []float32, c int) (mu, sd []float64) {
	n := len(f) / c
	mu, sd = make([]float64, c), make([]float64, c)
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			mu[j] += float64(f[i*c+j]) / float64(n)
		}
	}
	var top float64
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			d := float64(f[i*c+j]) - mu[j]
			sd[j] += d * d / float64(n)
		}
	}
	for j := range sd {
		sd[j] = math.Sqrt(sd[j])
		top = max(top, sd[j])
	}
	for j := range sd {
		sd[j] = max(sd[j], 1e-3*top, 1e-12)
	}
	return mu, sd
}

// Standardize returns (x - mu) / sd per channel of the rows of x.
func Standardize(x []float32, mu, sd []float64) []float32 {
	c := len(mu)
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32((float64(v) - mu[i%c]) / sd[i%c])
	}
	return out
}

// FoldStandardize rewrites a first layer trained on standardised inputs,
// y = W (x - mu)/sd + b, as one on raw inputs: W' = W/sd, b' = b - W' mu.
// w is (out, c) row-major.
func FoldStandardize(w, b []float32, mu, sd []float64) {
	c := len(mu)
	for o := range b {
		s := float64(b[o])
		for j := 0; j < c; j++ {
			wj := float64(w[o*c+j]) / sd[j]
			w[o*c+j] = float32(wj)
			s -= wj * mu[j]
		}
		b[o] = float32(s)
	}
}
