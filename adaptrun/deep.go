package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// deepSite is one adapted linear layer: a static pair (A (1, R, in), B (1,
// out, R), trained) or a generated one (a hyper-network head Linear(H, R*in
// + out*R) whose output row packs A then B).
type deepSite struct {
	site      train.Site
	in, out   int
	generated bool
	a, b      gpu.Tensor    // static
	head      adapt.Linear  // generated
	packed    gpu.Tensor    // generated, this step's head output (K, R*in + out*R)
	dPacked   gpu.Tensor    // its gradient
	u         gpu.Tensor    // this step's alpha * A_c x (rows, R)
	gA, gB    gpu.Tensor    // static gradients
	gW, gBias gpu.Tensor    // generated head gradients
	f, df     adapt.Factors // this step's factors and their gradient views
}

// DeepNet is an adapter with updates inside the decoder (and, usually, the
// head), on a frozen trainable copy of the base model: it implements
// train.Delta. A hyper-network's trunk (Linear-ReLU layers from the
// feature) is shared by every generated site; each site has its own last
// layer. Rows use update Cluster (K clusters a step; -1: none).
type DeepNet struct {
	TB    gpu.TrainBackend
	Cfg   model.Config
	R     int
	Alpha float32
	ops   adapt.Ops
	sites []*deepSite
	trunk []adapt.Linear
	tg    [][2]gpu.Tensor // trunk gradients
	// this step: each row's cluster, and (cl0) 0 for every adapted row,
	// the static sites' one pair
	cl, cl0         gpu.Tensor
	clHost, cl0Host []int32
	xs, zs          []gpu.Tensor // trunk inputs and pre-activations
	z               gpu.Tensor   // trunk output (K, H)
	live            []gpu.Tensor
	params          []gpu.Tensor
	grads           []gpu.Tensor
	names           []string
	hostIni         []model.HostTensor
}

// deepSites lists the sites a method updates: each of m.Deep at every
// layer, then the head.
func deepSites(m Method, layers int) []train.Site {
	var out []train.Site
	for l := range layers {
		for _, n := range m.Deep {
			out = append(out, train.Site{Layer: l, Name: n})
		}
	}
	return append(out, train.Site{Layer: -1, Name: train.SiteHead})
}

func siteKey(s train.Site) string { return fmt.Sprintf("%d.%s", s.Layer, s.Name) }

// NewDeepNet allocates a deep adapter for method m (Deep set) on tb,
// initialised for seed: static pairs as LoRA (A random, B zero), generated
// heads with a zero B part, so that training starts from the base model.
//
// (Over 80 lines: allocates and initialises every site's pair or head in turn,
// freeing all of them on any failure.)
func NewDeepNet(tb gpu.TrainBackend, cfg model.Config, m Method, alpha float32, seed uint64) (*DeepNet, error) {
	n := &DeepNet{TB: tb, Cfg: cfg, R: m.Rank, Alpha: alpha, ops: adapt.New(tb)}
	c := cfg.NEmbd
	rng := rand.New(rand.NewPCG(seed, 0xdee9))
	add := func(name string, shape []int, data []float32) (gpu.Tensor, error) {
		t, err := tb.Alloc(gpu.F32, shape...)
		if err == nil {
			err = tb.Write(t, data)
		}
		if err != nil {
			return nil, err
		}
		g, err := tb.Alloc(gpu.F32, shape...)
		if err != nil {
			tb.Free(t)
			return nil, err
		}
		n.params, n.grads, n.names = append(n.params, t), append(n.grads, g), append(n.names, name)
		n.hostIni = append(n.hostIni, model.HostTensor{Name: name, Shape: shape, Data: data})
		return t, nil
	}
	uniformData := func(size, fanIn int) []float32 {
		d := make([]float32, size)
		b := 1 / math.Sqrt(float64(fanIn))
		for i := range d {
			d[i] = float32((2*rng.Float64() - 1) * b)
		}
		return d
	}
	generated := m.Kind == KindHyper
	var err error
	if generated {
		in, _ := adapt.FeatureDim(m.Features, c)
		for l, h := range m.Hidden {
			var L adapt.Linear
			if L.W, err = add(fmt.Sprintf("hyper.trunk.%d.weight", l), []int{h, in}, uniformData(h*in, in)); err != nil {
				n.Free()
				return nil, err
			}
			if L.Bias, err = add(fmt.Sprintf("hyper.trunk.%d.bias", l), []int{h}, uniformData(h, in)); err != nil {
				n.Free()
				return nil, err
			}
			n.trunk = append(n.trunk, L)
			n.tg = append(n.tg, [2]gpu.Tensor{n.grads[len(n.grads)-2], n.grads[len(n.grads)-1]})
			in = h
		}
	}
	hl := 0
	if len(m.Hidden) > 0 {
		hl = m.Hidden[len(m.Hidden)-1]
	}
	for _, s := range deepSites(m, cfg.NLayer) {
		in, out, ok := cfg.SiteShape(s.Name)
		if !ok {
			return nil, fmt.Errorf("adaptrun: %s: unknown site %q", m.Name, s.Name)
		}
		ds := &deepSite{site: s, in: in, out: out, generated: generated && !(m.DeepStatic && s.Name != train.SiteHead)}
		key := siteKey(s)
		if ds.generated {
			w := uniformData((m.Rank*in+out*m.Rank)*hl, hl)
			bias := uniformData(m.Rank*in+out*m.Rank, hl)
			clear(w[m.Rank*in*hl:]) // zero B part: the update starts at zero
			clear(bias[m.Rank*in:])
			if ds.head.W, err = add("hyper."+key+".weight", []int{m.Rank*in + out*m.Rank, hl}, w); err == nil {
				ds.gW = n.grads[len(n.grads)-1]
				ds.head.Bias, err = add("hyper."+key+".bias", []int{m.Rank*in + out*m.Rank}, bias)
				ds.gBias = n.grads[len(n.grads)-1]
			}
		} else {
			if ds.a, err = add("lora."+key+".A", []int{1, m.Rank, in}, uniformData(m.Rank*in, in)); err == nil {
				ds.gA = n.grads[len(n.grads)-1]
				ds.b, err = add("lora."+key+".B", []int{1, out, m.Rank}, make([]float32, out*m.Rank))
				ds.gB = n.grads[len(n.grads)-1]
				ds.f = adapt.NewFactors(ds.a, ds.b)
				ds.df = adapt.NewFactors(ds.gA, ds.gB)
			}
		}
		if err != nil {
			n.Free()
			return nil, err
		}
		n.sites = append(n.sites, ds)
	}
	return n, nil
}

// Params and Grads are the adapter's trainable tensors, aligned.
func (n *DeepNet) Params() []gpu.Tensor { return n.params }
func (n *DeepNet) Grads() []gpu.Tensor  { return n.grads }

// Free releases everything.
func (n *DeepNet) Free() {
	n.endStep()
	for _, t := range append(n.params, n.grads...) {
		n.TB.Free(t)
	}
	n.params, n.grads = nil, nil
}

func (n *DeepNet) endStep() {
	for _, t := range n.live {
		n.TB.Free(t)
	}
	n.live, n.xs, n.zs, n.z, n.cl, n.cl0 = nil, nil, nil, nil, nil, nil
	for _, s := range n.sites {
		s.packed, s.dPacked, s.u = nil, nil, nil
	}
}

func (n *DeepNet) alloc(shape ...int) (gpu.Tensor, error) {
	t, err := n.TB.Alloc(gpu.F32, shape...)
	if err == nil {
		n.live = append(n.live, t)
	}
	return t, err
}

// begin sets up a step: the rows' clusters and, for generated sites, the
// factors of the K clusters from their (standardised) features means (K,
// in). It frees the previous step's tensors.
func (n *DeepNet) begin(cluster []int32, k int, means []float32) error {
	n.endStep()
	n.clHost = cluster
	cl, err := n.TB.Alloc(gpu.I32, len(cluster))
	if err != nil {
		return err
	}
	n.live = append(n.live, cl)
	if err := n.TB.Write(cl, cluster); err != nil {
		return err
	}
	n.cl, n.cl0, n.cl0Host = cl, cl, cluster
	if k > 1 {
		n.cl0Host = make([]int32, len(cluster))
		for i, c := range cluster {
			n.cl0Host[i] = min(c, 0)
		}
		if n.cl0, err = n.TB.Alloc(gpu.I32, len(cluster)); err != nil {
			return err
		}
		n.live = append(n.live, n.cl0)
		if err := n.TB.Write(n.cl0, n.cl0Host); err != nil {
			return err
		}
	}
	if len(n.trunk) == 0 {
		return nil
	}
	in := n.trunk[0].W.Shape()[1]
	if len(means) != k*in {
		return fmt.Errorf("adaptrun: %d feature values for %d clusters of width %d", len(means), k, in)
	}
	x, err := n.alloc(k, in)
	if err != nil {
		return err
	}
	if err := n.TB.Write(x, means); err != nil {
		return err
	}
	for _, L := range n.trunk {
		h := L.W.Shape()[0]
		z, err := n.alloc(k, h)
		if err != nil {
			return err
		}
		a, err := n.alloc(k, h)
		if err != nil {
			return err
		}
		n.TB.MatMul(z, x, L.W, L.Bias)
		n.ops.ReLU(a, z, nil)
		n.xs, n.zs = append(n.xs, x), append(n.zs, z)
		x = a
	}
	n.z = x
	for _, s := range n.sites {
		if !s.generated {
			continue
		}
		if s.packed, err = n.alloc(k, n.R*s.in+s.out*n.R); err != nil {
			return err
		}
		n.TB.MatMul(s.packed, n.z, s.head.W, s.head.Bias)
		s.f = adapt.PackedFactors(s.packed, n.R, s.in, s.out)
		if s.dPacked, err = n.alloc(k, n.R*s.in+s.out*n.R); err != nil {
			return err
		}
		s.df = adapt.PackedFactors(s.dPacked, n.R, s.in, s.out)
	}
	return nil
}

func (n *DeepNet) find(s train.Site) *deepSite {
	for _, d := range n.sites {
		if d.site == s {
			return d
		}
	}
	return nil
}

// Has implements train.Delta.
func (n *DeepNet) Has(s train.Site) bool { return n.find(s) != nil }

// Forward implements train.Delta: y += alpha * B_c (A_c x) per row.
func (n *DeepNet) Forward(s train.Site, y, x gpu.Tensor) error {
	d := n.find(s)
	rows := len(n.clHost)
	u, err := n.alloc(rows, n.R)
	if err != nil {
		return err
	}
	d.u = u
	cl, _ := n.clusters(d)
	n.ops.LowRankU(u, x, d.f, cl, n.Alpha)
	return n.ops.AddLowRank(y, u, d.f, cl)
}

// clusters are the rows' clusters for site d: their own for a generated
// site, 0 for every adapted row at a static one (its one pair).
func (n *DeepNet) clusters(d *deepSite) (gpu.Tensor, []int32) {
	if d.generated {
		return n.cl, n.clHost
	}
	return n.cl0, n.cl0Host
}

// Backward implements train.Delta: the factors' gradients (written; the
// static ones are the parameter gradients) and dx += alpha A_cᵀ (B_cᵀ dy).
func (n *DeepNet) Backward(s train.Site, dx, dy, x gpu.Tensor) error {
	d := n.find(s)
	var du gpu.Tensor
	if dx != nil {
		var err error
		if du, err = n.alloc(len(n.clHost), n.R); err != nil {
			return err
		}
	}
	cl, clHost := n.clusters(d)
	if err := n.ops.LowRankBackwardInput(d.df, du, dy, x, d.u, d.f, clHost, n.Alpha); err != nil {
		return err
	}
	if dx != nil {
		n.ops.AddLowRankT(dx, du, d.f, cl, n.Alpha)
	}
	return nil
}

// finish records the hyper-network's backward after the model's: each
// generated site's head, then the shared trunk (written gradients).
func (n *DeepNet) finish() error {
	if len(n.trunk) == 0 {
		return nil
	}
	k, h := n.z.Shape()[0], n.z.Shape()[1]
	dz, err := n.alloc(k, h)
	if err != nil {
		return err
	}
	n.TB.Zero(dz)
	tmp, err := n.alloc(k, h)
	if err != nil {
		return err
	}
	for _, s := range n.sites {
		if !s.generated {
			continue
		}
		n.TB.Zero(s.gW)
		n.TB.Zero(s.gBias)
		n.TB.MatMulBackward(tmp, s.gW, s.gBias, s.dPacked, n.z, s.head.W)
		n.TB.Accumulate(dz, tmp)
	}
	dOut := dz
	for l := len(n.trunk) - 1; l >= 0; l-- {
		dzl, err := n.alloc(n.zs[l].Shape()...)
		if err != nil {
			return err
		}
		n.ops.ReLUBackward(dzl, dOut, n.zs[l], nil)
		var dx gpu.Tensor
		if l > 0 {
			if dx, err = n.alloc(n.xs[l].Shape()...); err != nil {
				return err
			}
		}
		n.TB.Zero(n.tg[l][0])
		n.TB.Zero(n.tg[l][1])
		n.TB.MatMulBackward(dx, n.tg[l][0], n.tg[l][1], dzl, n.xs[l], n.trunk[l].W)
		dOut = dx
	}
	return nil
}

// deepBatch is a group's windows as a training batch and its rows' clusters.
func (s *Set) deepBatch(g group) (train.Batch, []int32) {
	var bt train.Batch
	var cl []int32
	for i, wi := range g.Members {
		w := s.Windows[wi]
		bt.Tokens = append(bt.Tokens, w.Tokens[:len(s.Targets[wi])])
		bt.Targets = append(bt.Targets, s.Targets[wi])
		for range s.Targets[wi] {
			cl = append(cl, int32(g.Cluster[i]))
		}
	}
	return bt, cl
}

// DeepTrainer trains and scores deep adapters on a frozen copy of the base.
type DeepTrainer struct {
	M *train.Model // the frozen base, F32, with gradients it never uses
}

// step runs one group through the base with net's updates: forward, and
// when opt is set, backward and an AdamW update at learning rate lr. It
// returns the per-row losses.
func (dt *DeepTrainer) step(net *DeepNet, s *Set, g group, opt *train.AdamW, lr float64) ([]float32, error) {
	bt, cl := s.deepBatch(g)
	k := max(g.K, 1)
	if err := net.begin(cl, k, g.Means); err != nil {
		return nil, err
	}
	m := dt.M
	m.Delta = net
	defer func() { m.Delta = nil }()
	if err := m.Forward(bt); err != nil {
		return nil, err
	}
	if opt != nil {
		if err := m.Backward(); err != nil {
			return nil, err
		}
		if err := net.finish(); err != nil {
			return nil, err
		}
		opt.GradNorm(net.grads)
		if _, err := opt.ReadNormSq(); err != nil {
			return nil, err
		}
		opt.Update(net.params, net.grads, lr)
	}
	return m.RowLosses()
}

// zeroGrads clears the frozen base's gradients (they accumulate and are
// never used; cleared now and then so that they stay finite).
func (dt *DeepTrainer) zeroGrads() { dt.M.ZeroGrad() }

// Adapter is the file form of a trained deep adapter described by meta
// (its Sites and StaticSites set here from the method): the parameters
// read back from the device under adapt's names (the trunk and the head's
// generated layer as a HyperNet's layers, block sites as site.* tensors),
// the standardisation mu, sd folded into the first layer, and the
// training centroids cents (hyper adapters) last.
func (n *DeepNet) Adapter(m Method, meta adapt.Meta, mu, sd []float64, cents *cluster.Centroids) (*adapt.Adapter, error) {
	meta.Sites = slices.Clone(m.Deep)
	meta.StaticSites = m.Kind == KindHyper && m.DeepStatic
	byName := map[string]gpu.Tensor{}
	for i, name := range n.names {
		byName[name] = n.params[i]
	}
	head := siteKey(train.Site{Layer: -1, Name: train.SiteHead})
	var ts []model.HostTensor
	for _, s := range meta.Spec() {
		if s.Name == adapt.CentroidsTensor {
			s.Data = cents.Data
			ts = append(ts, s)
			continue
		}
		var src, what string
		var layer int
		switch {
		case s.Name == "A" || s.Name == "B":
			src = "lora." + head + "." + s.Name
		case strings.HasPrefix(s.Name, "site."):
			// site.<layer>.<name>.<what> is <kind>.<layer>.<name>.<what> here.
			src = "lora." + strings.TrimPrefix(s.Name, "site.")
			if meta.Kind == adapt.KindHyper && !meta.StaticSites {
				src = "hyper." + strings.TrimPrefix(s.Name, "site.")
			}
		default:
			if _, err := fmt.Sscanf(s.Name, "hyper.%d.%s", &layer, &what); err != nil {
				return nil, fmt.Errorf("adaptrun: no deep tensor for %s", s.Name)
			}
			src = fmt.Sprintf("hyper.trunk.%d.%s", layer, what)
			if layer == len(meta.Hidden) {
				src = "hyper." + head + "." + what
			}
		}
		t, ok := byName[src]
		if !ok {
			return nil, fmt.Errorf("adaptrun: deep adapter has no tensor %s (for %s)", src, s.Name)
		}
		if !slices.Equal(t.Shape(), s.Shape) {
			return nil, fmt.Errorf("adaptrun: deep tensor %s is %v, the file's %s wants %v", src, t.Shape(), s.Name, s.Shape)
		}
		d, err := n.TB.ReadF32(t)
		if err != nil {
			return nil, err
		}
		s.Data = d
		ts = append(ts, s)
	}
	if mu != nil {
		FoldStandardize(ts[0].Data, ts[1].Data, mu, sd)
	}
	a := &adapt.Adapter{Meta: meta, Tensors: ts}
	return a, a.Validate()
}
