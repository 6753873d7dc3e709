package adapt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Static is a learnt low-rank adapter of the output projection on a
// backend: static LoRA (K = 1, every row uses it: pass a nil cluster to
// Ops.Logits) or per-domain experts (K experts, the cluster tensor holds
// each row's domain). Same kernels as the hyper-network's factors; only
// their provenance differs.
type Static struct {
	A     gpu.Tensor // (K, R, C) F32
	B     gpu.Tensor // (K, V, R) F32
	Alpha float32
}

// Factors is the adapter's factors for Ops.Logits.
func (s *Static) Factors() Factors { return NewFactors(s.A, s.B) }

// Free releases the adapter's tensors.
func (s *Static) Free(b gpu.Backend) {
	b.Free(s.A)
	b.Free(s.B)
	s.A, s.B = nil, nil
}

// StaticSpec is the name and shape of a static adapter's tensors: A (K, R,
// C) and B (K, V, R).
func StaticSpec(k, r, c, v int) []model.HostTensor {
	return []model.HostTensor{{Name: "A", Shape: []int{k, r, c}}, {Name: "B", Shape: []int{k, v, r}}}
}

// InitStatic is LoRA's initialisation: A uniform in ±1/sqrt(C), B zero, so
// that training starts from the unadapted model; deterministic for a seed.
func InitStatic(k, r, c, v int, seed uint64) []model.HostTensor {
	rng := rand.New(rand.NewPCG(seed, 0xbb67ae8584caa73b))
	ts := StaticSpec(k, r, c, v)
	bound := 1 / math.Sqrt(float64(c))
	for i := range ts {
		ts[i].Data = make([]float32, gpu.Numel(ts[i].Shape))
	}
	for j := range ts[0].Data {
		ts[0].Data[j] = float32((2*rng.Float64() - 1) * bound)
	}
	return ts
}

// UploadStatic puts a static adapter's host tensors (StaticSpec order and
// shapes, checked) on b.
func UploadStatic(b gpu.Backend, k, r, c, v int, alpha float32, host []model.HostTensor) (*Static, error) {
	return uploadPair(b, StaticSpec(k, r, c, v), host, alpha)
}

// uploadPair puts the host tensors of a factor pair (A, B), checked against
// spec's names and shapes, on b.
func uploadPair(b gpu.Backend, spec, host []model.HostTensor, alpha float32) (*Static, error) {
	if len(host) != len(spec) {
		return nil, fmt.Errorf("adapt: static adapter has %d tensors, want 2 (%s, %s)", len(host), spec[0].Name, spec[1].Name)
	}
	var ts [2]gpu.Tensor
	for i, s := range spec {
		t, err := uploadHost(b, "static adapter", i, host[i], s)
		if err != nil {
			if i == 1 {
				b.Free(ts[0])
			}
			return nil, err
		}
		ts[i] = t
	}
	return &Static{A: ts[0], B: ts[1], Alpha: alpha}, nil
}

// uploadHost checks host tensor i of what (a hyper-network, a static
// adapter) against its spec s, name, shape and length, and puts it on b.
func uploadHost(b gpu.Backend, what string, i int, h, s model.HostTensor) (gpu.Tensor, error) {
	if h.Name != s.Name || !slices.Equal(h.Shape, s.Shape) || len(h.Data) != gpu.Numel(s.Shape) {
		return nil, fmt.Errorf("adapt: %s tensor %d is %q %v with %d values, want %q %v",
			what, i, h.Name, h.Shape, len(h.Data), s.Name, s.Shape)
	}
	t, err := b.Alloc(gpu.F32, s.Shape...)
	if err != nil {
		return nil, fmt.Errorf("adapt: %s tensor %q: %w", what, s.Name, err)
	}
	if err := b.Write(t, h.Data); err != nil {
		b.Free(t)
		return nil, fmt.Errorf("adapt: %s tensor %q: %w", what, s.Name, err)
	}
	return t, nil
}

// uploadBasisB puts a gated basis's B, (1, V, R) in the file, on b as a
// (V, R) matrix.
func uploadBasisB(b gpu.Backend, a *Adapter) (gpu.Tensor, error) {
	host := a.StaticPair()
	if len(host) != 2 || len(host[1].Shape) != 3 || host[1].Shape[0] != 1 {
		return nil, fmt.Errorf("adapt: a gated basis without a static pair whose B is (1, V, R)")
	}
	h := host[1]
	vr := model.HostTensor{Name: h.Name, Shape: h.Shape[1:], Data: h.Data}
	return uploadHost(b, "gated basis", 1, vr, vr)
}
