package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/model"
)

// Tensors of a hyper adapter's gate (after its centroids).
const (
	GateAdaptTensor    = "gate.adapt"    // (Meta.GateAdapt, feature width)
	GatePretrainTensor = "gate.pretrain" // (Meta.GatePretrain, feature width)
)

// Gate decides which inputs a hyper adapter leaves to the base model: an
// input whose feature lies farther (squared distance) from every training
// centroid than Radius, or nearer the base model's own inputs (Pretrain,
// k-means centroids of the pretraining domains' training windows) than the
// adaptation domains' (Adapt, at the same granularity), gets no update.
// Either half may be absent (Radius 0, or nil centroids).
//
// Features, when set, makes the gate its own: it reads features of that
// kind (not necessarily the adapter's) and measures Radius around Adapt
// instead of the adapter's training centroids (Meta.GateFeatures).
type Gate struct {
	Radius          float64
	Adapt, Pretrain *cluster.Centroids
	Features        string
	// ClusterRadius (with Features) is the radius in the adapter's own
	// features around its training centroids (Meta.ClusterRadius).
	ClusterRadius float64
}

// NearestDist is the squared distance of x to its nearest centroid.
func NearestDist(cents *cluster.Centroids, x []float32) float64 {
	best := math.Inf(1)
	for k := range cents.K {
		var s float64
		for j, v := range cents.Row(k) {
			e := float64(x[j]) - float64(v)
			s += e * e
		}
		best = min(best, s)
	}
	return best
}

// Closed says whether the gate keeps feature x (of the gate's features)
// at the base model, given the adapter's training centroids (unused by a
// gate with its own Features: its radius is around Adapt).
func (g *Gate) Closed(train *cluster.Centroids, x []float32) bool {
	if g == nil {
		return false
	}
	if g.Features != "" {
		train = g.Adapt
	}
	if g.Radius > 0 && train != nil && NearestDist(train, x) > g.Radius {
		return true
	}
	return g.Pretrain != nil && g.Adapt != nil && NearestDist(g.Pretrain, x) < NearestDist(g.Adapt, x)
}

// SetGate stores g in a hyper adapter (replacing any gate it had): its
// radius in the metadata and its centroids as tensors after the training
// centroids.
func (a *Adapter) SetGate(g *Gate) error {
	if !gated(a.Meta.Kind) || a.Meta.Centroids == 0 {
		return fmt.Errorf("adapt: a gate belongs to a hyper or lora adapter with training centroids")
	}
	if (g.Adapt == nil) != (g.Pretrain == nil) {
		return fmt.Errorf("adapt: a gate needs both the adaptation and the pretraining centroids, or neither")
	}
	kind := a.Meta.Features
	if g.Features != "" {
		if g.Adapt == nil {
			return fmt.Errorf("adapt: a gate in features %q needs its adaptation and pretraining centroids", g.Features)
		}
		kind = g.Features
	}
	in, err := FeatureDim(kind, a.Meta.Base.Config.NEmbd)
	if err != nil {
		return fmt.Errorf("adapt: gate: %w", err)
	}
	if g.Adapt != nil && (g.Adapt.C != in || g.Pretrain.C != in) {
		return fmt.Errorf("adapt: gate centroids of width %d and %d for features of width %d", g.Adapt.C, g.Pretrain.C, in)
	}
	var ts []model.HostTensor
	for _, t := range a.Tensors {
		if t.Name != GateAdaptTensor && t.Name != GatePretrainTensor {
			ts = append(ts, t)
		}
	}
	a.Meta.GateRadius, a.Meta.GateAdapt, a.Meta.GatePretrain, a.Meta.GateFeatures, a.Meta.ClusterRadius = g.Radius, 0, 0, g.Features, 0
	if g.Features != "" {
		a.Meta.ClusterRadius = g.ClusterRadius
	}
	if g.Adapt != nil {
		a.Meta.GateAdapt, a.Meta.GatePretrain = g.Adapt.K, g.Pretrain.K
		ts = append(ts, model.HostTensor{Name: GateAdaptTensor, Shape: []int{g.Adapt.K, in}, Data: g.Adapt.Data},
			model.HostTensor{Name: GatePretrainTensor, Shape: []int{g.Pretrain.K, in}, Data: g.Pretrain.Data})
	}
	a.Tensors = ts
	return a.Validate()
}

// Gate is the adapter's stored gate, or nil.
func (a *Adapter) Gate() *Gate {
	if !gated(a.Meta.Kind) || (a.Meta.GateRadius == 0 && a.Meta.GateAdapt == 0) {
		return nil
	}
	g := &Gate{Radius: a.Meta.GateRadius, Features: a.Meta.GateFeatures, ClusterRadius: a.Meta.ClusterRadius}
	for _, t := range a.Tensors {
		c := &cluster.Centroids{K: t.Shape[0], C: t.Shape[len(t.Shape)-1], Data: t.Data, Meta: cluster.CentroidsMeta{Feature: cluster.FeatureKind}}
		switch t.Name {
		case GateAdaptTensor:
			g.Adapt = c
		case GatePretrainTensor:
			g.Pretrain = c
		}
	}
	return g
}

// validateGate checks the training centroids and the gate (hyper and lora
// adapters).
func (m Meta) validateGate() error {
	switch {
	case m.Centroids < 0:
		return fmt.Errorf("%s adapter with %d centroids", m.Kind, m.Centroids)
	case m.GateRadius < 0 || math.IsNaN(m.GateRadius) || math.IsInf(m.GateRadius, 0):
		return fmt.Errorf("gate radius %g: want a finite value >= 0", m.GateRadius)
	case m.ClusterRadius < 0 || math.IsNaN(m.ClusterRadius) || math.IsInf(m.ClusterRadius, 0):
		return fmt.Errorf("cluster radius %g: want a finite value >= 0", m.ClusterRadius)
	case m.GateAdapt < 0 || m.GatePretrain < 0 || (m.GateAdapt == 0) != (m.GatePretrain == 0):
		return fmt.Errorf("gate with %d adaptation and %d pretraining centroids: want both or neither", m.GateAdapt, m.GatePretrain)
	case (m.GateRadius > 0 || m.GateAdapt > 0) && m.Centroids == 0:
		return fmt.Errorf("a gate needs the training centroids")
	case m.GateFeatures != "" && m.GateAdapt == 0:
		return fmt.Errorf("a gate in features %q needs its adaptation and pretraining centroids", m.GateFeatures)
	}
	if m.GateFeatures != "" {
		if _, err := FeatureDim(m.GateFeatures, m.Base.Config.NEmbd); err != nil {
			return fmt.Errorf("gate features: %w", err)
		}
	}
	return nil
}

// MemoryRadius is the squared distance in the adapter's features within
// which the cache memory joins an input to a run-time cluster: the gate's
// radius, or ClusterRadius beside a gate of other features; 0: no gate.
func (m Meta) MemoryRadius() float64 {
	if m.GateFeatures != "" {
		return m.ClusterRadius
	}
	return m.GateRadius
}

// gateDim is the width of the gate's centroids: its own features' when
// GateFeatures is set, else the adapter's.
func (m Meta) gateDim() int {
	kind := m.Features
	if m.GateFeatures != "" {
		kind = m.GateFeatures
	}
	d, _ := FeatureDim(kind, m.Base.Config.NEmbd)
	return d
}

// gateSpec is the training centroids' and the gate's tensors (after the
// update's own).
func (m Meta) gateSpec() []model.HostTensor {
	in, _ := FeatureDim(m.Features, m.Base.Config.NEmbd)
	var spec []model.HostTensor
	if m.Centroids > 0 {
		spec = append(spec, model.HostTensor{Name: CentroidsTensor, Shape: []int{m.Centroids, in}})
	}
	if m.GateAdapt > 0 {
		gd := m.gateDim()
		spec = append(spec, model.HostTensor{Name: GateAdaptTensor, Shape: []int{m.GateAdapt, gd}},
			model.HostTensor{Name: GatePretrainTensor, Shape: []int{m.GatePretrain, gd}})
	}
	return spec
}
