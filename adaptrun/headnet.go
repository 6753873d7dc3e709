package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// AdapterNet is an adapter being trained on a frozen base model: its
// parameters on the device and what a step needs to turn a batch's hidden
// states into adapted logits and back into parameter gradients.
//
// A step sees M = rows of hidden states h (the base model's ln_f output),
// their targets, each row's cluster in [0, K) and, for a hyper-network,
// the K clusters' mean features. Forward:
//
//	hyper:   p = MLP(means) (K, R*C + V*R) -> A_k, B_k   (dropout in training)
//	static:  A (K, R, C), B (K, V, R) are the parameters
//	logits = W h + alpha * B_c (A_c h)        (adapt.Ops.Logits, one fused kernel)
//	hybrid: logits += alpha * Bs (As h)      for every adapted row (Meta.StaticRank:
//	        a static pair As (1, Rs, C), Bs (1, V, Rs); LowRankU, AddLowRank)
//	loss   = mean over rows with a target of cross-entropy
//
// and backward: cross-entropy, adapt.Ops.LowRankBackward into the factors'
// gradient (and the static pair's), then (hyper) each Linear's
// MatMulBackward and the ReLU/dropout backward down to the first layer.
type AdapterNet struct {
	Meta   adapt.Meta
	B      gpu.TrainBackend
	Wte    gpu.Tensor // the base model's tied output projection (V, C)
	ops    adapt.Ops
	params []gpu.Tensor
	grads  []gpu.Tensor
	names  []string
	hyper  *adapt.HyperNet // KindHyper
	static *adapt.Static   // KindLoRA, KindExperts
	pair   *adapt.Static   // KindHyper with Meta.StaticRank: the static pair (K = 1), params after the network's
}

// NewAdapterNet puts an adapter (host tensors in meta.Spec() order, the
// hyper adapter's centroids excluded) on b for training against wte.
func NewAdapterNet(b gpu.TrainBackend, wte gpu.Tensor, meta adapt.Meta, host []model.HostTensor) (*AdapterNet, error) {
	n := &AdapterNet{Meta: meta, B: b, Wte: wte, ops: adapt.New(b)}
	c := meta.Base.Config
	var err error
	if meta.Kind == adapt.KindHyper {
		nh := len(adapt.HyperSpec(meta.Hyper()))
		if len(host) < nh {
			return nil, fmt.Errorf("adaptrun: hyper adapter with %d tensors, want at least %d", len(host), nh)
		}
		if n.hyper, err = adapt.UploadHyper(b, meta.Hyper(), host[:nh]); err != nil {
			return nil, err
		}
		for _, l := range n.hyper.Layers {
			n.params = append(n.params, l.W, l.Bias)
		}
		if meta.StaticRank > 0 {
			if n.pair, err = (&adapt.Adapter{Meta: meta, Tensors: host}).UploadStaticPair(b); err != nil {
				n.hyper.Free(b)
				return nil, err
			}
			n.params = append(n.params, n.pair.A, n.pair.B)
		}
	} else {
		if n.static, err = adapt.UploadStatic(b, meta.Experts, meta.Rank, c.NEmbd, c.VocabSize, meta.Alpha, host); err != nil {
			return nil, err
		}
		n.params = []gpu.Tensor{n.static.A, n.static.B}
	}
	for i, p := range n.params {
		g, err := b.Alloc(gpu.F32, p.Shape()...)
		if err != nil {
			n.Free()
			return nil, err
		}
		n.grads = append(n.grads, g)
		n.names = append(n.names, host[i].Name)
	}
	return n, nil
}

// Params and Grads are aligned lists of the trainable tensors.
func (n *AdapterNet) Params() []gpu.Tensor { return n.params }
func (n *AdapterNet) Grads() []gpu.Tensor  { return n.grads }

// Free releases the adapter's tensors.
func (n *AdapterNet) Free() {
	if n.hyper != nil {
		n.hyper.Free(n.B)
	}
	if n.static != nil {
		n.static.Free(n.B)
	}
	if n.pair != nil {
		n.pair.Free(n.B)
	}
	freeAll(n.B, n.grads)
	n.grads, n.params = nil, nil
}

// Host reads the parameters back as host tensors (meta.Spec() order,
// centroids excluded).
func (n *AdapterNet) Host() ([]model.HostTensor, error) {
	out := make([]model.HostTensor, len(n.params))
	for i, p := range n.params {
		d, err := n.B.ReadF32(p)
		if err != nil {
			return nil, err
		}
		out[i] = model.HostTensor{Name: n.names[i], Shape: p.Shape(), Data: d}
	}
	return out, nil
}

// AdapterBatch is one step's input: M rows of hidden states (M, C) with
// their targets (-1: not scored), each row's cluster (-1: not adapted)
// and, for a hyper adapter, the K clusters' mean features (K, C).
type AdapterBatch struct {
	H       []float32
	Targets []int32
	Cluster []int32
	K       int
	Means   []float32
	// Gates (a gated basis, (K, R)): use these gates instead of the
	// network's on Means (TunedLosses).
	Gates []float32
	// ZeroGates (a gated basis, K or nil): the clusters whose generated
	// gates are held at zero in this step (Method.GateDrop).
	ZeroGates []bool
}

// stepState holds one forward's device tensors for the backward.
type stepState struct {
	n       *AdapterNet
	live    []gpu.Tensor
	h, tg   gpu.Tensor
	cl      gpu.Tensor
	cl0     gpu.Tensor // hybrid: 0 for an adapted row, -1 otherwise (the static pair's clusters)
	us      gpu.Tensor // hybrid: alpha As h (M, Rs)
	f       adapt.Factors
	logits  gpu.Tensor
	packed  gpu.Tensor   // hyper output
	xs, zs  []gpu.Tensor // hyper: each layer's input and pre-activation
	masks   []gpu.Tensor
	m, rows int // rows M, scored rows
	cluster []int32
	zero    []bool // AdapterBatch.ZeroGates
}

func (s *stepState) alloc(dt gpu.DType, shape ...int) (gpu.Tensor, error) {
	t, err := s.n.B.Alloc(dt, shape...)
	if err == nil {
		s.live = append(s.live, t)
	}
	return t, err
}

func (s *stepState) upload(dt gpu.DType, data any, shape ...int) (gpu.Tensor, error) {
	t, err := s.alloc(dt, shape...)
	if err != nil {
		return nil, err
	}
	return t, s.n.B.Write(t, data)
}

func (s *stepState) free() { freeAll(s.n.B, s.live) }

// forward uploads a batch and records the adapted logits. rng draws the
// dropout masks (nil: inference, no dropout).
//
// (Over 80 lines: records one batch through every layer of the net, keeping
// each layer's buffers for the backward.)
func (n *AdapterNet) forward(bt AdapterBatch, rng *rand.Rand) (*stepState, error) {
	cfg := n.Meta.Base.Config
	c := cfg.NEmbd
	m := len(bt.Targets)
	if len(bt.H) != m*c || len(bt.Cluster) != m {
		return nil, fmt.Errorf("adaptrun: adapter batch with %d hidden values, %d targets and %d cluster ids (C = %d)", len(bt.H), m, len(bt.Cluster), c)
	}
	s := &stepState{n: n, m: m, cluster: clampClusters(bt.Cluster)}
	for _, t := range bt.Targets {
		if t >= 0 {
			s.rows++
		}
	}
	var err error
	fail := func(e error) (*stepState, error) { s.free(); return nil, e }
	if s.h, err = s.upload(gpu.F32, bt.H, m, c); err != nil {
		return fail(err)
	}
	if s.tg, err = s.upload(gpu.I32, bt.Targets, m); err != nil {
		return fail(err)
	}
	if s.cl, err = s.upload(gpu.I32, bt.Cluster, m); err != nil {
		return fail(err)
	}
	if n.hyper != nil {
		hc := n.hyper.Cfg
		in := hc.InDim()
		if len(bt.Means) != bt.K*in || bt.K < 1 {
			return fail(fmt.Errorf("adaptrun: %d mean-feature values for %d clusters of width %d", len(bt.Means), bt.K, in))
		}
		x, err := s.upload(gpu.F32, bt.Means, bt.K, in)
		if err != nil {
			return fail(err)
		}
		if n.Meta.Basis && bt.Gates != nil {
			if s.packed, err = s.upload(gpu.F32, bt.Gates, bt.K, hc.OutDim()); err != nil {
				return fail(err)
			}
			if s.f, err = s.gateBasis(bt.K); err != nil {
				return fail(err)
			}
			return s.headLogits()
		}
		var masks [][]float32
		if rng != nil && hc.Dropout > 0 {
			masks = adapt.DropoutMasks(hc, bt.K, rng)
		}
		d := hc.Dims()
		for l, L := range n.hyper.Layers {
			s.xs = append(s.xs, x)
			z, err := s.alloc(gpu.F32, bt.K, d[l+1])
			if err != nil {
				return fail(err)
			}
			n.B.MatMul(z, x, L.W, L.Bias)
			if l == len(n.hyper.Layers)-1 {
				s.packed = z
				break
			}
			s.zs = append(s.zs, z)
			var mask gpu.Tensor
			if masks != nil {
				if mask, err = s.upload(gpu.F32, masks[l], bt.K, d[l+1]); err != nil {
					return fail(err)
				}
			}
			s.masks = append(s.masks, mask)
			a, err := s.alloc(gpu.F32, bt.K, d[l+1])
			if err != nil {
				return fail(err)
			}
			n.ops.ReLU(a, z, mask)
			x = a
		}
		if n.Meta.Basis {
			if len(bt.ZeroGates) != 0 && len(bt.ZeroGates) != bt.K {
				return fail(fmt.Errorf("adaptrun: %d zero-gate flags for %d clusters", len(bt.ZeroGates), bt.K))
			}
			s.zero = bt.ZeroGates
			if err := s.zeroRows(s.packed); err != nil {
				return fail(err)
			}
			if s.f, err = s.gateBasis(bt.K); err != nil {
				return fail(err)
			}
		} else {
			s.f = n.hyper.Factors(s.packed)
		}
	} else {
		s.f = n.static.Factors()
	}
	return s.headLogits()
}

// headLogits records the adapted logits of a forward whose factors s.f
// are set (a hybrid's static pair added after them), freeing s on an
// error.
func (s *stepState) headLogits() (*stepState, error) {
	n := s.n
	m, v := s.m, n.Meta.Base.Config.VocabSize
	fail := func(e error) (*stepState, error) { s.free(); return nil, e }
	var err error
	if s.logits, err = s.alloc(gpu.F32, m, v); err != nil {
		return fail(err)
	}
	if err := n.ops.Logits(s.logits, s.h, n.Wte, nil, s.f, s.cl, n.Meta.Alpha); err != nil {
		return fail(err)
	}
	if n.pair != nil {
		if s.cl0, err = s.upload(gpu.I32, s.cluster, m); err != nil {
			return fail(err)
		}
		if n.Meta.Basis {
			return s, nil // the pair is in the gated factors
		}
		if s.us, err = s.alloc(gpu.F32, m, n.Meta.StaticRank); err != nil {
			return fail(err)
		}
		pf := n.pair.Factors()
		n.ops.LowRankU(s.us, s.h, pf, s.cl0, n.Meta.Alpha)
		if err := n.ops.AddLowRank(s.logits, s.us, pf, s.cl0); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// gateBasis makes a gated basis's factors from the generated gates
// (s.packed, (K, R)): A_k = diag(1 + g_k) A per cluster, B shared.
func (s *stepState) gateBasis(k int) (adapt.Factors, error) {
	n := s.n
	pf := n.pair.Factors()
	gated, err := s.alloc(gpu.F32, k, pf.R, pf.C)
	if err != nil {
		return adapt.Factors{}, err
	}
	n.ops.GateFactors(gated, n.pair.A, s.packed)
	l := pf.Layout
	l.K, l.BStride = k, 0
	return adapt.Factors{Layout: l, A: gated, B: pf.B}, nil
}

// zeroRows zeroes the rows of the (K, R) gates, or of their gradient, of
// the clusters s.zero names: a dropped cluster's gates are zero, and so
// is the gradient the gate network gets from it. The tensor is small (K
// clusters of R gates) and goes through the host.
func (s *stepState) zeroRows(t gpu.Tensor) error {
	if !slices.Contains(s.zero, true) {
		return nil
	}
	v, err := s.n.B.ReadF32(t)
	if err != nil {
		return err
	}
	r := len(v) / len(s.zero)
	for k, z := range s.zero {
		if z {
			clear(v[k*r : (k+1)*r])
		}
	}
	return s.n.B.Write(t, v)
}

// basisBackward records a gated basis's gradients: B's and the gated
// shrink's input gradient du by LowRankBackwardInput over every adapted row
// as one cluster (B is shared), then A's and the gates' (dp, the
// network's output gradient) by GateBackward from du and the ungated
// shrink alpha A h.
func (s *stepState) basisBackward(dl, dp gpu.Tensor, cluster []int32) error {
	n := s.n
	g := len(n.grads)
	pf := n.pair.Factors()
	u, err := s.alloc(gpu.F32, s.m, pf.R)
	if err != nil {
		return err
	}
	n.ops.LowRankU(u, s.h, s.f, s.cl, n.Meta.Alpha)
	du, err := s.alloc(gpu.F32, s.m, pf.R)
	if err != nil {
		return err
	}
	// dA here is a scratch write: GateBackward writes A's gradient after it.
	if err := n.ops.LowRankBackwardInput(adapt.NewFactors(n.grads[g-2], n.grads[g-1]), du, dl, s.h, u, pf,
		clampClusters(cluster), n.Meta.Alpha); err != nil {
		return err
	}
	u0, err := s.alloc(gpu.F32, s.m, pf.R)
	if err != nil {
		return err
	}
	n.ops.LowRankU(u0, s.h, pf, s.cl0, n.Meta.Alpha)
	return n.ops.GateBackward(n.grads[g-2], dp, du, u0, s.h, s.packed, cluster, n.Meta.Alpha)
}

// clampClusters maps every adapted row's cluster to 0 and keeps -1: the
// clusters of a static pair that every adapted row shares.
func clampClusters(cl []int32) []int32 {
	out := make([]int32, len(cl))
	for i, c := range cl {
		out[i] = min(c, 0)
	}
	return out
}

// backward records the gradients of the mean loss into Grads (written).
func (s *stepState) backward(cluster []int32) error {
	n := s.n
	cfg := n.Meta.Base.Config
	dl, err := s.alloc(gpu.F32, s.m, cfg.VocabSize)
	if err != nil {
		return err
	}
	n.B.CrossEntropyBackward(dl, s.logits, s.tg, float32(1/float64(max(s.rows, 1))))
	if n.Meta.Basis {
		dp, err := s.alloc(gpu.F32, s.packed.Shape()...)
		if err != nil {
			return err
		}
		if err := s.basisBackward(dl, dp, cluster); err != nil {
			return err
		}
		if err := s.zeroRows(dp); err != nil {
			return err
		}
		return s.hyperBackward(dp)
	}
	u, err := s.alloc(gpu.F32, s.m, n.Meta.Rank)
	if err != nil {
		return err
	}
	n.ops.LowRankU(u, s.h, s.f, s.cl, n.Meta.Alpha)
	if n.static != nil {
		return n.ops.LowRankBackward(adapt.NewFactors(n.grads[0], n.grads[1]), dl, s.h, u, s.f, cluster, n.Meta.Alpha)
	}
	if n.pair != nil {
		g := len(n.grads)
		if err := n.ops.LowRankBackward(adapt.NewFactors(n.grads[g-2], n.grads[g-1]), dl, s.h, s.us, n.pair.Factors(),
			clampClusters(cluster), n.Meta.Alpha); err != nil {
			return err
		}
	}
	dp, err := s.alloc(gpu.F32, s.packed.Shape()...)
	if err != nil {
		return err
	}
	hc := n.hyper.Cfg
	if err := n.ops.LowRankBackward(adapt.PackedFactors(dp, hc.Rank, hc.C, hc.V), dl, s.h, u, s.f, cluster, n.Meta.Alpha); err != nil {
		return err
	}
	return s.hyperBackward(dp)
}

// hyperBackward records the hyper-network's gradients (Grads, written)
// from its output's gradient dp, through every Linear's MatMulBackward
// and the ReLU/dropout backward down to the first layer.
func (s *stepState) hyperBackward(dp gpu.Tensor) error {
	n := s.n
	var err error
	dOut := dp
	for l := len(n.hyper.Layers) - 1; l >= 0; l-- {
		L := n.hyper.Layers[l]
		n.B.Zero(n.grads[2*l])
		n.B.Zero(n.grads[2*l+1])
		var dx gpu.Tensor
		if l > 0 {
			if dx, err = s.alloc(gpu.F32, s.xs[l].Shape()...); err != nil {
				return err
			}
		}
		n.B.MatMulBackward(dx, n.grads[2*l], n.grads[2*l+1], dOut, s.xs[l], L.W)
		if l == 0 {
			break
		}
		dz, err := s.alloc(gpu.F32, s.zs[l-1].Shape()...)
		if err != nil {
			return err
		}
		n.ops.ReLUBackward(dz, dx, s.zs[l-1], s.masks[l-1])
		dOut = dz
	}
	return nil
}

// rowLosses returns each row's cross-entropy (0 for unscored rows).
func (s *stepState) rowLosses() ([]float32, error) {
	ce, err := s.alloc(gpu.F32, s.m)
	if err != nil {
		return nil, err
	}
	s.n.B.CrossEntropy(ce, s.logits, s.tg)
	return s.n.B.ReadF32(ce)
}

// Losses runs the adapter without dropout on a batch and returns each
// row's cross-entropy in nats (0 for rows without a target).
func (n *AdapterNet) Losses(bt AdapterBatch) ([]float32, error) {
	s, err := n.forward(bt, nil)
	if err != nil {
		return nil, err
	}
	defer s.free()
	return s.rowLosses()
}

func freeAll(b gpu.Backend, ts []gpu.Tensor) {
	for _, t := range ts {
		if t != nil {
			b.Free(t)
		}
	}
}

// finite reports whether x is neither NaN nor ±Inf.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
