package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Groupings: which update each evaluated window gets.
const (
	GroupBase      = "base"           // none: the base model
	GroupStatic    = "static"         // lora: its one update for every window
	GroupOracle    = "oracle"         // experts: the window's own domain's (uses the label)
	GroupRouted    = "routed"         // experts, table: the nearest training centroid's (no labels)
	GroupClustered = "clustered"      // hyper: k-means on the evaluated windows themselves, one cluster a batch, its mean feature
	GroupOnline    = "online"         // hyper: the nearest training centroid, as input (the serving case)
	GroupUngated   = "online-ungated" // hyper: online, with every window adapted however far from the training centroids
	GroupChecked   = "online-checked" // hyper: online and gated, each update kept only where it lowers the window's prompt loss
	GroupRandom    = "random"         // hyper: random batches of mixed windows, their mean feature
	GroupMean      = "mean-update"    // hyper control: the size-weighted mean of the clustered updates, for everyone
	GroupShuffled  = "shuffled"       // hyper control: clustered, each cluster given another cluster's update
	GroupSelected  = "selected"       // experts, table, hyper: the candidate update its own prompt prefers, or none (selected.go)

	// lora with Features, the fair control for the gated hyper rows: its
	// one update behind the same gate (training centroids of its own
	// windows, radius, pretraining centroids), and also self-checked.
	GroupStaticGated   = "static-gated"
	GroupStaticChecked = "static-checked"
)

// Scores are per-window summed losses (nats) and scored-token counts.
type Scores struct {
	Loss []float64 `json:"loss"`
	N    []int     `json:"n"`
}

// Mean is the loss per token over all windows (or over those with keep
// true, when keep is given).
func (s Scores) Mean(keep func(i int) bool) float64 {
	var l float64
	var n int
	for i := range s.Loss {
		if keep == nil || keep(i) {
			l += s.Loss[i]
			n += s.N[i]
		}
	}
	return l / float64(max(n, 1))
}

// Evaluator scores adapters of one base model.
type Evaluator struct {
	TB    gpu.TrainBackend
	Wte   gpu.Tensor // the base's tied output projection (V, C), F32
	Base  adapt.Base
	Batch int    // windows a batch
	Seed  uint64 // clustered and random groupings
	// Deep scores methods with updates inside the decoder (nil: they are
	// refused).
	Deep *DeepTrainer
	// Train and Fit, when both are set, turn on the second half of the
	// gate: a window nearer the pretraining domains' training windows (Fit)
	// than the adaptation domains' (Train) keeps the base model. Each side
	// is summarised by k-means centroids at the same granularity, one per
	// Batch windows.
	Train, Fit *Set
	// Tune is GroupTuned's test-time training of a gated basis's gates.
	Tune Tune
	// SharedGate, when set, names the feature space (adapt.FeatureEmbed,
	// FeatureHidden or FeatureBoth) of one gate that every adapter's gated
	// rows share, whatever its own features: the radius is GateQuantile of
	// the adaptation domains' training windows around their own centroids
	// in that space (not the adapter's training centroids), and the
	// pretraining half is as always in that space. Its decisions then
	// depend on the windows alone, so two methods' gated rows differ only
	// in their updates. Empty: each adapter's own gate (its features, its
	// training centroids' radius). Needs Train and Fit.
	SharedGate string
	// CheckSlack loosens the self-check: a window keeps its update where
	// the update raises its prompt's loss by less than CheckSlack nats a
	// prompt token (0: only where it lowers it).
	CheckSlack float64
	gates      map[string][2]*cluster.Centroids
	shared     map[string]adapt.Gate // SharedGate's gate by feature space
	lastCheck  *Scores               // the last self-check's prompt-loss differences (selfCheck)
	lastSelect []int                 // the last selection's choice per window (selectByPrompt)
	selections map[selectKey][]int   // an adapter's choices for a set (selectByPrompt)
	base       map[*Set]Scores       // the base model's scores of a set (baseScores)
	prompts    map[*Set]*Set         // a set's prompt targets (promptSet)
}

// baseScores is the base model's scores of s, computed once per set: they
// depend on the windows alone, and every self-checked row's slack choice
// (chooseSlack) needs those of the same validation sets.
func (e *Evaluator) baseScores(s *Set) (Scores, error) {
	if sc, ok := e.base[s]; ok {
		return sc, nil
	}
	sc, err := e.Score(nil, s, GroupBase, 1)
	if err != nil {
		return Scores{}, err
	}
	if e.base == nil {
		e.base = map[*Set]Scores{}
	}
	e.base[s] = sc
	return sc, nil
}

// Score evaluates t (nil: the base model) on s under grouping, with the
// hidden states scaled by scale (1: none; a temperature of 1/scale).
//
// (Over 80 lines: one evaluation under every grouping: the gate, the self-check
// and the controls act in turn on the same per-window losses.)
func (e *Evaluator) Score(t *Trained, s *Set, grouping string, scale float32) (Scores, error) {
	c, v := e.Base.Config.NEmbd, e.Base.Config.VocabSize
	n := len(s.Windows)
	var gs []group
	meta, host := adapt.Meta{}, []model.HostTensor(nil)
	if t != nil && t.Deep != nil {
		if e.Deep == nil {
			return Scores{}, fmt.Errorf("adaptrun: %s updates the decoder and the evaluator has no decoder to run", t.M.Name)
		}
		if grouping == GroupMean {
			return Scores{}, fmt.Errorf("adaptrun: the mean-update control is not defined for updates inside the decoder")
		}
	} else if t != nil {
		meta, host = t.Adapter.Meta, t.Adapter.Tensors
		if meta.Kind == adapt.KindHyper {
			host = append(slices.Clone(t.Adapter.HyperTensors()), t.Adapter.StaticPair()...)
		}
	}
	seq := func(cl int) {
		for _, ch := range chunks(seqIdx(n), e.Batch) {
			gs = append(gs, group{Members: ch, Cluster: uniform(len(ch), cl), K: 1})
		}
	}
	need := func(kinds ...string) error {
		if t == nil || !slices.Contains(kinds, t.M.Kind) {
			return fmt.Errorf("adaptrun: grouping %q does not apply to %v", grouping, kindOf(t))
		}
		return nil
	}
	switch grouping {
	case GroupBase:
		meta = adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: 1, Alpha: 1, Base: e.Base}
		host = adapt.InitStatic(1, 1, c, v, 0)
		seq(-1)
	case GroupStatic, GroupStaticGated, GroupStaticChecked:
		if err := need(KindLoRA); err != nil {
			return Scores{}, err
		}
		if grouping != GroupStatic && t.Cents == nil {
			return Scores{}, fmt.Errorf("adaptrun: %s has no training centroids for a gate (a lora method needs Features)", t.M.Name)
		}
		seq(0)
	case GroupOracle:
		if err := need(KindExperts); err != nil {
			return Scores{}, err
		}
		by := map[int][]int{}
		for i, di := range s.Dom {
			x := slices.Index(t.Domains, s.Domains[di])
			if x < 0 {
				return Scores{}, fmt.Errorf("adaptrun: no expert for domain %s", s.Domains[di])
			}
			by[x] = append(by[x], i)
		}
		for x := range len(t.Domains) {
			for _, ch := range chunks(by[x], e.Batch) {
				gs = append(gs, group{Members: ch, Cluster: uniform(len(ch), x), K: len(t.Domains)})
			}
		}
	case GroupRouted:
		if err := need(KindExperts, KindTable); err != nil {
			return Scores{}, err
		}
		as, err := t.Cents.Assign(s.Feature(t.M.Features))
		if err != nil {
			return Scores{}, err
		}
		for _, b := range cluster.FormBatches(as, t.Cents.K, e.Batch) {
			gs = append(gs, group{Members: b.Seqs, Cluster: uniform(len(b.Seqs), b.Cluster), K: t.Cents.K})
		}
	case GroupOnline, GroupUngated, GroupChecked, GroupTuned:
		if err := need(KindHyper); err != nil {
			return Scores{}, err
		}
		if grouping == GroupTuned && !t.Adapter.Meta.Basis {
			return Scores{}, fmt.Errorf("adaptrun: grouping %q is for a gated basis, not %v", grouping, kindOf(t))
		}
		as, err := t.Cents.Assign(s.Feature(t.M.Features))
		if err != nil {
			return Scores{}, err
		}
		for _, b := range cluster.FormBatches(as, t.Cents.K, e.Batch) {
			gs = append(gs, group{Members: b.Seqs, Cluster: uniform(len(b.Seqs), 0), K: 1,
				Means: slices.Clone(t.Cents.Row(b.Cluster))})
		}
	case GroupSelected:
		choice, sg, err := e.selectByPrompt(t, s, meta, host)
		if err != nil {
			return Scores{}, err
		}
		gs, e.lastSelect = sg, choice
	case GroupClustered, GroupShuffled, GroupMean:
		if err := need(KindHyper); err != nil {
			return Scores{}, err
		}
		f := s.Feature(t.M.Features)
		dim := len(f) / n
		res, err := kmeans(f, dim, cluster.DefaultK(n, e.Batch), e.Seed)
		if err != nil {
			return Scores{}, err
		}
		for _, b := range cluster.FormBatches(res.Assign, res.Centroids.K, e.Batch) {
			gs = append(gs, group{Members: b.Seqs, Cluster: uniform(len(b.Seqs), 0), K: 1, Means: meanOf(f, dim, b.Seqs)})
		}
		if grouping == GroupShuffled && len(gs) > 1 {
			p := rand.New(rand.NewPCG(e.Seed, 0x5f)).Perm(len(gs))
			means := make([][]float32, len(gs))
			for i := range p {
				means[p[i]] = gs[p[(i+1)%len(p)]].Means
			}
			for i := range gs {
				gs[i].Means = means[i]
			}
		}
		if grouping == GroupMean {
			dw, err := meanUpdate(t, gs, n)
			if err != nil {
				return Scores{}, err
			}
			eye := make([]float32, c*c)
			for i := range c {
				eye[i*c+i] = 1
			}
			meta = adapt.Meta{Kind: adapt.KindLoRA, Experts: 1, Rank: c, Alpha: 1, Base: e.Base}
			host = []model.HostTensor{{Name: "lora.A", Shape: []int{1, c, c}, Data: eye}, {Name: "lora.B", Shape: []int{1, v, c}, Data: dw}}
			for i := range gs {
				gs[i].Means = nil
			}
		}
	case GroupRandom:
		if err := need(KindHyper); err != nil {
			return Scores{}, err
		}
		f := s.Feature(t.M.Features)
		dim := len(f) / n
		for _, ch := range chunks(rand.New(rand.NewPCG(e.Seed, 7)).Perm(n), e.Batch) {
			gs = append(gs, group{Members: ch, Cluster: uniform(len(ch), 0), K: 1, Means: meanOf(f, dim, ch)})
		}
	default:
		return Scores{}, fmt.Errorf("adaptrun: unknown grouping %q", grouping)
	}
	// The gate: windows far from every training centroid of t, or nearer
	// the pretraining domains' windows than the adaptation domains', keep
	// the base model (not for the oracle, which knows the domain, nor
	// online-ungated, nor a LoRA's plain static row).
	if t != nil && (t.Radius > 0 || e.SharedGate != "") && grouping != GroupOracle && grouping != GroupUngated && grouping != GroupStatic {
		closed, err := e.gateFor(t, s)
		if err != nil {
			return Scores{}, err
		}
		for gi := range gs {
			for j, wi := range gs[gi].Members {
				if closed(wi) {
					gs[gi].Cluster[j] = -1
				}
			}
		}
	}
	out := Scores{Loss: make([]float64, n), N: make([]int, n)}
	if t != nil && t.Deep != nil {
		for _, g := range gs {
			if g.Means != nil {
				g.Means = Standardize(g.Means, t.Mu, t.SD)
			}
			ls, err := e.Deep.step(t.Deep, s, g, nil, 0)
			if err != nil {
				return Scores{}, err
			}
			out.add(s, g, ls, false)
		}
		return out, finiteScores(out, grouping)
	}
	if grouping == GroupChecked || grouping == GroupStaticChecked || grouping == GroupTuned {
		if err := e.selfCheck(t, s, grouping, gs); err != nil {
			return Scores{}, err
		}
	}
	if grouping == GroupMean {
		// the names above are the static spec's; take them from it
		spec := adapt.StaticSpec(1, c, c, v)
		host[0].Name, host[1].Name = spec[0].Name, spec[1].Name
	}
	net, err := NewAdapterNet(e.TB, e.Wte, meta, host)
	if err != nil {
		return Scores{}, err
	}
	defer net.Free()
	if grouping != GroupTuned {
		// the head acts on each position alone: positions without a
		// target (a window's prompt; a prompt set's continuation) need no
		// logits
		out, err = scoreGroups(net, s, gs, scale)
		if err != nil {
			return Scores{}, err
		}
		return out, finiteScores(out, grouping)
	}
	for _, g := range gs {
		// the gates are tuned on the prompt rows; the scored rows then
		// read them
		ls, err := net.TunedLosses(s.scoredBatch(g, scale), s.promptBatch(g), e.Tune)
		if err != nil {
			return Scores{}, err
		}
		out.add(s, g, ls, true)
	}
	return out, finiteScores(out, grouping)
}

func finiteScores(s Scores, grouping string) error {
	for i, l := range s.Loss {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return fmt.Errorf("adaptrun: window %d: non-finite loss under %s", i, grouping)
		}
	}
	return nil
}

func seqIdx(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func kindOf(t *Trained) string {
	if t == nil {
		return "the base model"
	}
	return t.M.Kind + " adapter " + t.M.Name
}

// promptTargets is a copy of s that scores each window's prompt instead:
// row j predicts token j+1 while j+1 is inside the prompt, nothing after
// (a window's hidden states cover at least its prompt).
func promptTargets(s *Set) *Set {
	c := *s
	c.Targets = make([][]int32, len(s.Windows))
	for i, w := range s.Windows {
		t := len(s.Hidden[i]) / s.C
		p := min(t, s.Prompt)
		tg := make([]int32, t)
		for j := range tg {
			tg[j] = -1
			if j+1 < p {
				tg[j] = w.Tokens[j+1]
			}
		}
		c.Targets[i] = tg
	}
	return &c
}
