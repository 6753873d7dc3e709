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
type Gate struct {
	Radius          float64
	Adapt, Pretrain *cluster.Centroids
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

// Closed says whether the gate keeps feature x at the base model, given
// the adapter's training centroids.
func (g *Gate) Closed(train *cluster.Centroids, x []float32) bool {
	if g == nil {
		return false
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
	in, _ := FeatureDim(a.Meta.Features, a.Meta.Base.Config.NEmbd)
	var ts []model.HostTensor
	for _, t := range a.Tensors {
		if t.Name != GateAdaptTensor && t.Name != GatePretrainTensor {
			ts = append(ts, t)
		}
	}
	a.Meta.GateRadius, a.Meta.GateAdapt, a.Meta.GatePretrain = g.Radius, 0, 0
	if (g.Adapt == nil) != (g.Pretrain == nil) {
		return fmt.Errorf("adapt: a gate needs both the adaptation and the pretraining centroids, or neither")
	}
	if g.Adapt != nil {
		if g.Adapt.C != in || g.Pretrain.C != in {
			return fmt.Errorf("adapt: gate centroids of width %d and %d for features of width %d", g.Adapt.C, g.Pretrain.C, in)
		}
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
	g := &Gate{Radius: a.Meta.GateRadius}
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
