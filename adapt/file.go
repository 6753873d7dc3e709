package adapt

import (
	"encoding/json"
	"fmt"
	"github.com/chameleon-llm/chameleon/cluster"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// Kind is an adapter's method.
type Kind string

const (
	KindLoRA    Kind = "lora"    // static LoRA: tensors A (1, R, C), B (1, V, R)
	KindExperts Kind = "experts" // per-domain experts: A (K, R, C), B (K, V, R)
	KindHyper   Kind = "hyper"   // hyper-network: hyper.<l>.weight (out, in), hyper.<l>.bias (out)
)

// maxRank bounds R: the fused kernel loops R times per distinct cluster of
// a 16-row block, which must stay far under lavapipe's 65,535-iteration
// budget.
const maxRank = 1024

// Metadata keys of an adapter file's safetensors header.
const (
	formatKey   = "format"
	formatValue = "chameleon-adapter"
	metaKey     = "chameleon.adapter" // the JSON of Meta
)

// Meta describes an adapter: stored as JSON in its file's metadata.
type Meta struct {
	Kind    Kind    `json:"kind"`
	Rank    int     `json:"rank"`
	Alpha   float32 `json:"alpha"`
	Experts int     `json:"experts,omitempty"` // K: 1 for lora, the number of domains for experts
	Hidden  []int   `json:"hidden,omitempty"`  // hyper: hidden widths
	Dropout float32 `json:"dropout,omitempty"` // hyper: training dropout
	// Features is what a hyper adapter conditions on (FeatureEmbed, the
	// default when empty, FeatureHidden or FeatureBoth); it sets the
	// hyper-network's input width and the stored centroids' (FeatureDim).
	Features string `json:"features,omitempty"`
	// The gate (hyper adapters, see Gate): the radius, and how many
	// adaptation and pretraining centroids are stored after the training
	// centroids (tensors gate.adapt and gate.pretrain); zero: none.
	GateRadius   float64 `json:"gate_radius,omitempty"`
	GateAdapt    int     `json:"gate_adapt,omitempty"`
	GatePretrain int     `json:"gate_pretrain,omitempty"`
	// GateFeatures, when set, is the gate's own feature space (a
	// FeatureDim kind, e.g. FeatureBoth for an adapter conditioned on
	// FeatureHidden): its centroids have that width and its radius is
	// measured around its adaptation centroids, not the training centroids,
	// so one gate can serve adapters of any features. Empty: the adapter's.
	GateFeatures string `json:"gate_features,omitempty"`
	// ClusterRadius is, beside a gate of its own features, the radius the
	// gate would have in the adapter's (around its training centroids):
	// the scale the cache memory joins run-time clusters within
	// (MemoryRadius).
	ClusterRadius float64 `json:"cluster_radius,omitempty"`
	// SelfCheck: plans keep a sequence's update only where it lowers the
	// loss of the sequence's own tokens (the prompt), else the base model.
	SelfCheck bool `json:"self_check,omitempty"`
	// CheckStride and CheckMargin stage the self-check (CheckStages,
	// staged.go): its first stage scores every CheckStride-th checked
	// prediction, and a prompt whose mean difference there is below
	// -CheckMargin nats keeps its update without the rest. Chosen on
	// validation (`chameleon adapt stage`); 0: one stage.
	CheckStride int     `json:"check_stride,omitempty"`
	CheckMargin float64 `json:"check_margin,omitempty"`
	// Select: online plans of a self-checked (one stage) head-only hyper
	// adapter choose each prompt's update among its Select nearest training
	// centroids' by the prompt's own loss (selectcheck.go); 0, 1: nearest.
	Select int `json:"select,omitempty"`
	// Sites are the decoder's block sites (model.SiteQKV, SiteProj,
	// SiteFC, SiteFC2) updated at every layer besides the output
	// projection; none: the output projection only (see sites.go).
	// StaticSites makes a hyper adapter's block sites static pairs (the
	// paper's v3); they are generated otherwise.
	Sites       []string `json:"sites,omitempty"`
	StaticSites bool     `json:"static_sites,omitempty"`
	// StaticRank (hyper adapters) adds a static LoRA pair of this rank to
	// the output projection, shared by every adapted row, on top of the
	// generated per-cluster update (ChamaleonLLM+ hybrid): tensors
	// static.A (1, Rs, C) and static.B (1, V, Rs) right after the
	// hyper-network's. 0: none.
	StaticRank int `json:"static_rank,omitempty"`
	// Basis (hyper adapters with StaticRank = Rank): the hyper-network
	// generates gates g_k on the static pair's components instead of a
	// pair of its own, logits += alpha * B diag(1 + g_k) A h (the gated
	// basis, ops_gate.go).
	Basis bool `json:"basis,omitempty"`
	// Centroids is the number of training-cluster centroids stored with a
	// hyper adapter (tensor "centroids" (K, C), last), for assigning new
	// inputs online; 0: none stored.
	Centroids int  `json:"centroids,omitempty"`
	Base      Base `json:"base"` // the model it was trained for
}

// Validate reports the first inconsistency of m.
func (m Meta) Validate() error {
	if err := m.Base.Config.Validate(); err != nil {
		return fmt.Errorf("base model: %w", err)
	}
	for _, h := range []string{m.Base.Wte, m.Base.LnF} {
		if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			return fmt.Errorf("base model fingerprint %q is not a SHA-256 in hex", h)
		}
	}
	if m.Rank <= 0 || m.Rank > maxRank {
		return fmt.Errorf("rank %d: want 1..%d", m.Rank, maxRank)
	}
	if math.IsNaN(float64(m.Alpha)) || math.IsInf(float64(m.Alpha), 0) {
		return fmt.Errorf("alpha %g is not finite", m.Alpha)
	}
	if err := m.validateSites(); err != nil {
		return err
	}
	st := CheckStages{Stride: m.CheckStride, Margin: m.CheckMargin}
	if err := st.Validate(); err != nil {
		return err
	}
	if st.On() && !m.SelfCheck {
		return fmt.Errorf("a staged self-check (stride %d) without the self-check", m.CheckStride)
	}
	if m.Select < 0 || m.Select > 1 && (m.Kind != KindHyper || !m.SelfCheck || st.On() || len(m.Sites) > 0 || m.Centroids == 0 || m.Select > m.Centroids) {
		return fmt.Errorf("select %d: want 0 or 1, or up to the %d training centroids of a head-only hyper adapter with a one-stage self-check (have %s, self-check %v, stride %d, %d sites)",
			m.Select, m.Centroids, m.Kind, m.SelfCheck, m.CheckStride, len(m.Sites))
	}
	if m.StaticRank < 0 || m.StaticRank > maxRank {
		return fmt.Errorf("static rank %d: want 0..%d", m.StaticRank, maxRank)
	}
	if m.StaticRank > 0 && m.Kind != KindHyper {
		return fmt.Errorf("static_rank is for hyper adapters (a %s adapter is static already)", m.Kind)
	}
	if m.Basis && (m.Kind != KindHyper || m.StaticRank != m.Rank || len(m.Sites) > 0) {
		return fmt.Errorf("a gated basis is a head-only hyper adapter with static_rank = rank (have %s, rank %d, static_rank %d, %d sites)",
			m.Kind, m.Rank, m.StaticRank, len(m.Sites))
	}
	switch m.Kind {
	case KindLoRA:
		if m.Experts != 1 {
			return fmt.Errorf("lora adapter with experts = %d, want 1", m.Experts)
		}
		if m.Centroids > 0 || m.Features != "" {
			// A gated LoRA: the training centroids and gate read features.
			if _, err := FeatureDim(m.Features, m.Base.Config.NEmbd); err != nil {
				return err
			}
		}
		return m.validateGate()
	case KindExperts:
		if m.Experts < 1 {
			return fmt.Errorf("experts adapter with experts = %d, want at least 1", m.Experts)
		}
	case KindHyper:
		if _, err := FeatureDim(m.Features, m.Base.Config.NEmbd); err != nil {
			return err
		}
		if err := m.validateGate(); err != nil {
			return err
		}
		return m.Hyper().Validate()
	default:
		return fmt.Errorf("unknown adapter kind %q (want lora, experts or hyper)", m.Kind)
	}
	return nil
}

// gated says whether adapters of this kind may carry centroids and a gate.
func gated(kind Kind) bool { return kind == KindHyper || kind == KindLoRA }

// KindLabel names the adapter's kind for people: "gated basis" (a static
// pair whose components the hyper-network weighs per cluster),
// "hyper-network", "static LoRA", or the kind itself.
func (m Meta) KindLabel() string {
	switch {
	case m.Kind == KindHyper && m.Basis:
		return "gated basis"
	case m.Kind == KindHyper:
		return "hyper-network"
	case m.Kind == KindLoRA:
		return "static LoRA"
	}
	return string(m.Kind)
}

// Hyper is the hyper-network architecture of a KindHyper adapter.
func (m Meta) Hyper() HyperConfig {
	c := m.Base.Config
	in, _ := FeatureDim(m.Features, c.NEmbd)
	return HyperConfig{C: c.NEmbd, V: c.VocabSize, In: in, Rank: m.Rank, Alpha: m.Alpha, Hidden: m.Hidden, Dropout: m.Dropout, Basis: m.Basis}
}

// What a hyper-network conditions on: per sequence, over its prompt's real
// tokens, each part L2-normalised.
const (
	FeatureEmbed  = "embed"        // mean token embedding (the paper's; C values)
	FeatureHidden = "hidden"       // mean final hidden state of the base model (ln_f output; C values)
	FeatureBoth   = "embed+hidden" // both, concatenated (2C values)
)

// FeatureDim is the width of a feature kind for model width c ("" is
// FeatureEmbed); an unknown kind is an error.
func FeatureDim(kind string, c int) (int, error) {
	switch kind {
	case "", FeatureEmbed, FeatureHidden:
		return c, nil
	case FeatureBoth:
		return 2 * c, nil
	}
	return 0, fmt.Errorf("unknown feature kind %q (want %s, %s or %s)", kind, FeatureEmbed, FeatureHidden, FeatureBoth)
}

// Spec is the name and shape of every tensor of the adapter m describes.
func (m Meta) Spec() []model.HostTensor {
	c := m.Base.Config
	if m.Kind == KindHyper {
		spec := append(HyperSpec(m.Hyper()), m.staticPairSpec()...)
		spec = append(spec, m.siteSpec()...)
		return append(spec, m.gateSpec()...)
	}
	spec := append(StaticSpec(m.Experts, m.Rank, c.NEmbd, c.VocabSize), m.siteSpec()...)
	if m.Kind == KindLoRA {
		spec = append(spec, m.gateSpec()...)
	}
	return spec
}

// Adapter is an adapter's parameters on the host, tensors in Meta.Spec()
// order: what Save writes and Load returns.
type Adapter struct {
	Meta    Meta
	Tensors []model.HostTensor
}

// Validate checks the metadata and every tensor against it: names, shapes
// and finite values.
func (a *Adapter) Validate() error {
	if err := a.Meta.Validate(); err != nil {
		return fmt.Errorf("adapt: %w", err)
	}
	spec := a.Meta.Spec()
	if len(a.Tensors) != len(spec) {
		return fmt.Errorf("adapt: %s adapter has %d tensors, want %d", a.Meta.Kind, len(a.Tensors), len(spec))
	}
	for i, s := range spec {
		t := a.Tensors[i]
		if t.Name != s.Name || !slices.Equal(t.Shape, s.Shape) || len(t.Data) != gpu.Numel(s.Shape) {
			return fmt.Errorf("adapt: tensor %d is %q %v with %d values, want %q %v", i, t.Name, t.Shape, len(t.Data), s.Name, s.Shape)
		}
		for j, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("adapt: tensor %q element %d is %g", t.Name, j, v)
			}
		}
	}
	return nil
}

// Write writes the adapter as safetensors (F32 tensors) with its Meta as
// JSON under the header metadata key "chameleon.adapter".
func (a *Adapter) Write(w io.Writer) error {
	if err := a.Validate(); err != nil {
		return err
	}
	js, err := json.Marshal(a.Meta)
	if err != nil {
		return fmt.Errorf("adapt: %w", err)
	}
	ts := make([]tensorfile.Tensor, len(a.Tensors))
	for i, t := range a.Tensors {
		if ts[i], err = tensorfile.FromFloat32(t.Name, tensorfile.F32, t.Shape, t.Data); err != nil {
			return fmt.Errorf("adapt: %w", err)
		}
	}
	return tensorfile.WriteSafetensors(w, ts, map[string]string{formatKey: formatValue, metaKey: string(js)})
}

// Save writes the adapter to path atomically (a temporary file renamed
// into place once complete: tensorfile.WriteFileAtomic).
func Save(path string, a *Adapter) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if err := tensorfile.WriteFileAtomic(path, a.Write); err != nil {
		return fmt.Errorf("adapt: %w", err)
	}
	return nil
}

// Load reads and validates the adapter file at path and refuses it, with
// an error naming the difference, unless it was made for the model whose
// identity is base (BaseOf, BaseOfModel).
func Load(path string, base Base) (*Adapter, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	a, err := Read(f, st.Size(), base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// Read is Load from an io.ReaderAt of size bytes (a browser's fs.FS file,
// an embedded file).
func Read(r io.ReaderAt, size int64, base Base) (*Adapter, error) {
	f, err := tensorfile.ReadSafetensors(r, size)
	if err != nil {
		return nil, fmt.Errorf("adapt: %w", err)
	}
	if f.Metadata[formatKey] != formatValue {
		return nil, fmt.Errorf("adapt: not a Chameleon adapter file (metadata %q is %q, want %q)", formatKey, f.Metadata[formatKey], formatValue)
	}
	var meta Meta
	dec := json.NewDecoder(strings.NewReader(f.Metadata[metaKey]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return nil, fmt.Errorf("adapt: adapter metadata %q: %w", metaKey, err)
	}
	if err := meta.Validate(); err != nil {
		return nil, fmt.Errorf("adapt: adapter metadata: %w", err)
	}
	if err := meta.Base.Match(base); err != nil {
		return nil, fmt.Errorf("adapt: refusing the %s adapter: %w", meta.Kind, err)
	}
	if err := checkTensorCount(meta, len(f.Names())); err != nil {
		return nil, err
	}
	spec := meta.Spec()
	if names := f.Names(); len(names) != len(spec) {
		return nil, fmt.Errorf("adapt: %s adapter of rank %d has %d tensors %s, want %d: %s",
			meta.Kind, meta.Rank, len(names), listNames(names), len(spec), listNames(specNames(spec)))
	}
	for i := range spec {
		s := &spec[i]
		info, ok := f.Info(s.Name)
		if !ok {
			return nil, fmt.Errorf("adapt: tensor %q missing (file has %s)", s.Name, listNames(f.Names()))
		}
		if info.DType != tensorfile.F32 && info.DType != tensorfile.F16 && info.DType != tensorfile.BF16 {
			return nil, fmt.Errorf("adapt: tensor %q has dtype %v, want F32, F16 or BF16", s.Name, info.DType)
		}
		if !slices.Equal(info.Shape, s.Shape) {
			return nil, fmt.Errorf("adapt: tensor %q has shape %v, the metadata (%s, rank %d) wants %v", s.Name, info.Shape, meta.Kind, meta.Rank, s.Shape)
		}
		if err := f.CheckFinite(s.Name); err != nil {
			return nil, fmt.Errorf("adapt: %w", err)
		}
		if s.Data, err = f.Float32(s.Name); err != nil {
			return nil, fmt.Errorf("adapt: %w", err)
		}
	}
	return &Adapter{Meta: meta, Tensors: spec}, nil
}

func specNames(spec []model.HostTensor) []string {
	out := make([]string, len(spec))
	for i, s := range spec {
		out[i] = s.Name
	}
	return out
}

// UploadHyper puts a KindHyper adapter's network on b.
func (a *Adapter) UploadHyper(b gpu.Backend) (*HyperNet, error) {
	if a.Meta.Kind != KindHyper {
		return nil, fmt.Errorf("adapt: a %s adapter is not a hyper-network", a.Meta.Kind)
	}
	return UploadHyper(b, a.Meta.Hyper(), a.HyperTensors())
}

// CentroidsTensor names the training centroids in a hyper adapter file.
const CentroidsTensor = "centroids"

// TrainingCentroids returns the centroids of the clusters a hyper adapter
// was trained on, or nil when the file stores none.
func (a *Adapter) TrainingCentroids() *cluster.Centroids {
	if !gated(a.Meta.Kind) || a.Meta.Centroids == 0 {
		return nil
	}
	for _, t := range a.Tensors {
		if t.Name == CentroidsTensor {
			return &cluster.Centroids{K: t.Shape[0], C: t.Shape[1], Data: t.Data, Meta: cluster.CentroidsMeta{Feature: cluster.FeatureKind}}
		}
	}
	return nil
}

// HyperTensors are a hyper adapter's network tensors (HyperSpec order),
// without the static pair, the block sites', the centroids and the gate
// stored after them.
func (a *Adapter) HyperTensors() []model.HostTensor {
	return a.Tensors[:min(len(a.Tensors), len(HyperSpec(a.Meta.Hyper())))]
}

// Names of a hybrid hyper adapter's static pair (Meta.StaticRank).
const (
	StaticPairA = "static.A" // (1, Rs, C)
	StaticPairB = "static.B" // (1, V, Rs)
)

// staticPairSpec is the name and shape of m's static pair (none when
// StaticRank is 0).
func (m Meta) staticPairSpec() []model.HostTensor {
	if m.StaticRank <= 0 {
		return nil
	}
	c := m.Base.Config
	return []model.HostTensor{
		{Name: StaticPairA, Shape: []int{1, m.StaticRank, c.NEmbd}},
		{Name: StaticPairB, Shape: []int{1, c.VocabSize, m.StaticRank}},
	}
}

// headTensors is the number of tensors of the output projection's update
// at the start of a's tensors: the hyper-network's and its static pair,
// or a static adapter's two.
func (m Meta) headTensors() int {
	if m.Kind != KindHyper {
		return 2
	}
	return len(HyperSpec(m.Hyper())) + len(m.staticPairSpec())
}

// StaticPair returns a hybrid hyper adapter's static pair, A (1, Rs, C)
// and B (1, V, Rs), or nil when it has none (Meta.StaticRank 0).
func (a *Adapter) StaticPair() []model.HostTensor {
	if a.Meta.Kind != KindHyper || a.Meta.StaticRank <= 0 {
		return nil
	}
	n := len(HyperSpec(a.Meta.Hyper()))
	return a.Tensors[n:min(len(a.Tensors), n+2)]
}

// UploadStaticPair puts a hybrid hyper adapter's static pair on b (nil,
// nil when it has none).
func (a *Adapter) UploadStaticPair(b gpu.Backend) (*Static, error) {
	host := a.StaticPair()
	if host == nil {
		return nil, nil
	}
	return uploadPair(b, a.Meta.staticPairSpec(), host, a.Meta.Alpha)
}

// UploadStatic puts a KindLoRA or KindExperts adapter's factors on b.
func (a *Adapter) UploadStatic(b gpu.Backend) (*Static, error) {
	if a.Meta.Kind != KindLoRA && a.Meta.Kind != KindExperts {
		return nil, fmt.Errorf("adapt: a %s adapter has no static factors", a.Meta.Kind)
	}
	c := a.Meta.Base.Config
	return UploadStatic(b, a.Meta.Experts, a.Meta.Rank, c.NEmbd, c.VocabSize, a.Meta.Alpha, a.Tensors[:min(2, len(a.Tensors))])
}
