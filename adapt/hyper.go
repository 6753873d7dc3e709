package adapt

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// HyperConfig is a hyper-network's architecture: an MLP from a cluster's
// mean feature (C) through ReLU-Dropout hidden layers to the packed factors
// of a rank-R update of the output projection:
//
//	Linear(C, H1)-ReLU-Dropout(p)-...-Linear(Hn-1, Hn)-ReLU-Dropout(p)-Linear(Hn, R*C + V*R)
//
// ChamaleonLLM's is Hidden = [64, 32], Dropout = 0.5.
type HyperConfig struct {
	C, V    int     // model width and vocabulary
	In      int     // input (feature) width; 0 means C
	Rank    int     // R, the rank of the generated update
	Alpha   float32 // the update's scale
	Hidden  []int   // hidden widths H1..Hn, at least one
	Dropout float32 // dropout probability after each hidden ReLU, in training only
	// Basis: the last layer outputs R gates on a static basis pair
	// (ops_gate.go) instead of a pair of its own: OutDim is R.
	Basis bool
}

// DefaultHyper is ChamaleonLLM's hyper-network for width c, vocabulary v
// and rank r: hidden widths 64 and 32, dropout 0.5, alpha 1.
func DefaultHyper(c, v, r int) HyperConfig {
	return HyperConfig{C: c, V: v, Rank: r, Alpha: 1, Hidden: []int{64, 32}, Dropout: 0.5}
}

// Validate reports the first inconsistency of c.
func (c HyperConfig) Validate() error {
	switch {
	case c.C <= 0 || c.V <= 0:
		return fmt.Errorf("adapt: hyper-network for C=%d V=%d: both must be positive", c.C, c.V)
	case c.Rank <= 0 || c.Rank > maxRank:
		return fmt.Errorf("adapt: hyper-network rank %d: want 1..%d", c.Rank, maxRank)
	case len(c.Hidden) == 0:
		return fmt.Errorf("adapt: hyper-network needs at least one hidden layer")
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fmt.Errorf("adapt: hyper-network dropout %g: want 0 <= p < 1", c.Dropout)
	case math.IsNaN(float64(c.Alpha)) || math.IsInf(float64(c.Alpha), 0):
		return fmt.Errorf("adapt: hyper-network alpha %g is not finite", c.Alpha)
	}
	for i, h := range c.Hidden {
		if h <= 0 {
			return fmt.Errorf("adapt: hyper-network hidden layer %d has width %d", i, h)
		}
	}
	return nil
}

// OutDim is the width of the last layer: R*C + V*R (816,400 for GPT-2
// small at R = 16), or R gates for a gated basis.
func (c HyperConfig) OutDim() int {
	if c.Basis {
		return c.Rank
	}
	return c.Rank*c.C + c.V*c.Rank
}

// Dims are the layer widths from input to output: C, H1..Hn, OutDim.
func (c HyperConfig) Dims() []int {
	return append(append([]int{c.InDim()}, c.Hidden...), c.OutDim())
}

// InDim is the input width: In, or C when In is 0.
func (c HyperConfig) InDim() int {
	if c.In > 0 {
		return c.In
	}
	return c.C
}

// Linear is one layer of the hyper-network on a backend.
type Linear struct {
	W    gpu.Tensor // weight (out, in) F32
	Bias gpu.Tensor // bias (out) F32
}

// HyperNet is a hyper-network on a backend. Layer l maps Dims()[l] to
// Dims()[l+1]; the last one outputs the packed factors, whose row k is
// A_k (R, C) flattened row-major followed by B_k (V, R) flattened
// row-major: out[k, j*C + i] = A_k[j, i] and out[k, R*C + v*R + j] =
// B_k[v, j] (PackedFactors reads them in place).
type HyperNet struct {
	Cfg    HyperConfig
	Layers []Linear
}

// hyperName is the file name of layer l's weight or bias ("weight", "bias").
func hyperName(l int, what string) string { return fmt.Sprintf("hyper.%d.%s", l, what) }

// HyperSpec is the name and shape of every hyper-network tensor, in order:
// hyper.<l>.weight (out, in) and hyper.<l>.bias (out) for each layer.
func HyperSpec(c HyperConfig) []model.HostTensor {
	d := c.Dims()
	var out []model.HostTensor
	for l := 0; l+1 < len(d); l++ {
		out = append(out,
			model.HostTensor{Name: hyperName(l, "weight"), Shape: []int{d[l+1], d[l]}},
			model.HostTensor{Name: hyperName(l, "bias"), Shape: []int{d[l+1]}})
	}
	return out
}

// InitHyper is PyTorch's default initialisation of every layer (weights
// and biases uniform in ±1/sqrt(in)), deterministic for a seed.
func InitHyper(c HyperConfig, seed uint64) []model.HostTensor {
	rng := rand.New(rand.NewPCG(seed, 0x3c6ef372fe94f82b))
	ts := HyperSpec(c)
	for i := range ts {
		t := &ts[i]
		in := ts[i&^1].Shape[1] // the layer's weight holds its input width
		bound := 1 / math.Sqrt(float64(in))
		t.Data = make([]float32, gpu.Numel(t.Shape))
		for j := range t.Data {
			t.Data[j] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	return ts
}

// UploadHyper puts a hyper-network's host tensors (HyperSpec order and
// shapes, checked) on b.
func UploadHyper(b gpu.Backend, c HyperConfig, host []model.HostTensor) (*HyperNet, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	spec := HyperSpec(c)
	if len(host) != len(spec) {
		return nil, fmt.Errorf("adapt: hyper-network has %d tensors, want %d", len(host), len(spec))
	}
	n := &HyperNet{Cfg: c}
	ts := make([]gpu.Tensor, len(spec))
	for i, s := range spec {
		t, err := uploadHost(b, "hyper-network", i, host[i], s)
		if err != nil {
			n.Free(b)
			return nil, err
		}
		ts[i] = t
		if i%2 == 1 {
			n.Layers = append(n.Layers, Linear{W: ts[i-1], Bias: t})
		}
	}
	return n, nil
}

// Free releases the hyper-network's tensors.
func (n *HyperNet) Free(b gpu.Backend) {
	for _, l := range n.Layers {
		b.Free(l.W)
		b.Free(l.Bias)
	}
	n.Layers = nil
}

// DropoutMasks draws a training mask for every hidden layer of K rows:
// masks[l] has K*Hidden[l] values, 0 for a dropped unit and 1/(1-p) for a
// kept one (inverted dropout), from a seeded generator so that a training
// step can be replayed. Upload each as a (K, Hidden[l]) F32 tensor.
func DropoutMasks(c HyperConfig, k int, rng *rand.Rand) [][]float32 {
	keep := float32(1 / (1 - float64(c.Dropout)))
	out := make([][]float32, len(c.Hidden))
	for l, h := range c.Hidden {
		m := make([]float32, k*h)
		for i := range m {
			if rng.Float32() >= c.Dropout {
				m[i] = keep
			}
		}
		out[l] = m
	}
	return out
}

// Forward runs the hyper-network on K cluster features: out (K, OutDim) =
// MLP(feats (K, C)), through the backend's MatMul and Ops.ReLU. masks is
// nil at inference (dropout off), or one (K, Hidden[l]) F32 tensor per
// hidden layer from DropoutMasks for a training step. It panics on shape
// mismatches and returns an error if a temporary cannot be allocated.
func (n *HyperNet) Forward(o Ops, out, feats gpu.Tensor, masks []gpu.Tensor) error {
	d := n.Cfg.Dims()
	if len(n.Layers) != len(d)-1 {
		panic(fmt.Sprintf("adapt: HyperNet.Forward: %d layers, config has %d", len(n.Layers), len(d)-1))
	}
	fs := feats.Shape()
	if len(fs) != 2 || fs[1] != n.Cfg.InDim() {
		panic(fmt.Sprintf("adapt: HyperNet.Forward: feats %v, want (K, %d)", fs, n.Cfg.InDim()))
	}
	k := fs[0]
	gpu.CheckShape("HyperNet.Forward", "feats", feats, gpu.F32, k, n.Cfg.InDim())
	gpu.CheckShape("HyperNet.Forward", "out", out, gpu.F32, k, n.Cfg.OutDim())
	if masks != nil && len(masks) != len(n.Cfg.Hidden) {
		panic(fmt.Sprintf("adapt: HyperNet.Forward: %d dropout masks for %d hidden layers", len(masks), len(n.Cfg.Hidden)))
	}
	x, tmp, err := n.hidden(o, feats, masks)
	defer freeAll(o.Backend(), tmp)
	if err != nil {
		return err
	}
	last := n.Layers[len(n.Layers)-1]
	o.Backend().MatMul(out, x, last.W, last.Bias)
	return nil
}

// hidden runs every layer but the last on feats (K, InDim): it returns the
// last hidden layer's activations (K, Hn) and the temporaries to free
// (which hold them) once the caller's kernels that read them are recorded.
func (n *HyperNet) hidden(o Ops, feats gpu.Tensor, masks []gpu.Tensor) (gpu.Tensor, []gpu.Tensor, error) {
	d := n.Cfg.Dims()
	k := feats.Shape()[0]
	var tmp []gpu.Tensor
	x := feats
	for l, L := range n.Layers[:len(n.Layers)-1] {
		z, err := o.Backend().Alloc(gpu.F32, k, d[l+1])
		if err != nil {
			return nil, tmp, fmt.Errorf("adapt: hyper-network layer %d: %w", l, err)
		}
		tmp = append(tmp, z)
		a, err := o.Backend().Alloc(gpu.F32, k, d[l+1])
		if err != nil {
			return nil, tmp, fmt.Errorf("adapt: hyper-network layer %d: %w", l, err)
		}
		tmp = append(tmp, a)
		o.Backend().MatMul(z, x, L.W, L.Bias)
		var mask gpu.Tensor
		if masks != nil {
			mask = masks[l]
		}
		o.ReLU(a, z, mask)
		x = a
	}
	return x, tmp, nil
}

func freeAll(b gpu.Backend, ts []gpu.Tensor) {
	for _, t := range ts {
		b.Free(t)
	}
}

// Factors is the view of a Forward output as K factor pairs.
func (n *HyperNet) Factors(out gpu.Tensor) Factors {
	return PackedFactors(out, n.Cfg.Rank, n.Cfg.C, n.Cfg.V)
}
