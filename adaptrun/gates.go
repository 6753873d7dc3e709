package adaptrun

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/cluster"
)

// sharedGate is the gate of e.SharedGate: its adaptation-side centroids
// (the radius is taken around them), radius and pretraining centroids,
// made once per feature space.
func (e *Evaluator) sharedGate() (adapt.Gate, error) {
	kind := e.SharedGate
	if g, ok := e.shared[kind]; ok {
		return g, nil
	}
	if e.Train == nil || e.Fit == nil {
		return adapt.Gate{}, fmt.Errorf("adaptrun: a shared gate needs the adaptation and pretraining domains' training windows")
	}
	if _, err := adapt.FeatureDim(kind, e.Base.Config.NEmbd); err != nil {
		return adapt.Gate{}, err
	}
	gc, err := e.gateCents(kind)
	if err != nil {
		return adapt.Gate{}, err
	}
	g := sharedGateOf(kind, gc, e.Train)
	if e.shared == nil {
		e.shared = map[string]adapt.Gate{}
	}
	e.shared[kind] = g
	return g, nil
}

// gateCents returns the adaptation and pretraining centroids in the
// feature space of kind (nil when the gate has no pretraining windows).
func (e *Evaluator) gateCents(kind string) ([2]*cluster.Centroids, error) {
	if g, ok := e.gates[kind]; ok {
		return g, nil // computed before, or a file's gate (TuneEval)
	}
	if e.Train == nil || e.Fit == nil {
		return [2]*cluster.Centroids{}, nil
	}
	g, err := gateCentroids(kind, e.Train, e.Fit, e.Batch)
	if err != nil {
		return g, err
	}
	if e.gates == nil {
		e.gates = map[string][2]*cluster.Centroids{}
	}
	e.gates[kind] = g
	return g, nil
}

// gateCentroids summarises the adaptation domains' training windows
// (train) and the pretraining domains' (fit) by k-means in the feature
// space of kind, one centroid per batch windows on each side.
func gateCentroids(kind string, train, fit *Set, batch int) ([2]*cluster.Centroids, error) {
	var g [2]*cluster.Centroids
	for i, s := range []*Set{train, fit} {
		f := s.Feature(kind)
		dim := len(f) / len(s.Windows)
		res, err := kmeans(f, dim, cluster.DefaultK(len(s.Windows), batch), 1)
		if err != nil {
			return g, err
		}
		g[i] = res.Centroids
	}
	return g, nil
}

// GateFor is the gate a hyper (or gated lora) adapter's file stores: the radius that
// holds GateQuantile of the training windows (train, the adaptation
// domains') around its training centroids, and, when fit (the pretraining
// domains' training windows) is given, both sides' centroids.
//
// kind, when set, gives the adapter a gate of its own features instead
// (adapt.Gate.Features), the one the benchmark's rows behind a shared gate
// read (Config.SharedGates, Evaluator.sharedGate): its radius around its
// adaptation centroids in kind's features; it needs fit.
func GateFor(a *adapt.Adapter, train, fit *Set, batch int, kind string) (*adapt.Gate, error) {
	cents := a.TrainingCentroids()
	if cents == nil {
		return nil, fmt.Errorf("adaptrun: a gate needs a hyper or lora adapter with training centroids")
	}
	f := train.Feature(a.Meta.Features)
	if len(f)/len(train.Windows) != cents.C {
		return nil, fmt.Errorf("adaptrun: features of width %d for centroids of width %d", len(f)/len(train.Windows), cents.C)
	}
	own := radius(cents, f, GateQuantile)
	if kind != "" {
		if fit == nil {
			return nil, fmt.Errorf("adaptrun: a gate of %s features needs the pretraining domains' training windows", kind)
		}
		if _, err := adapt.FeatureDim(kind, a.Meta.Base.Config.NEmbd); err != nil {
			return nil, err
		}
		gc, err := gateCentroids(kind, train, fit, batch)
		if err != nil {
			return nil, err
		}
		g := sharedGateOf(kind, gc, train)
		g.ClusterRadius = own
		return &g, nil
	}
	g := &adapt.Gate{Radius: own}
	if fit != nil {
		gc, err := gateCentroids(a.Meta.Features, train, fit, batch)
		if err != nil {
			return nil, err
		}
		g.Adapt, g.Pretrain = gc[0], gc[1]
	}
	return g, nil
}

// sharedGateOf is the gate of its own in kind's features with the
// adaptation and pretraining centroids gc (gateCentroids): the radius
// holds GateQuantile of the adaptation domains' training windows (train)
// around the adaptation side's.
func sharedGateOf(kind string, gc [2]*cluster.Centroids, train *Set) adapt.Gate {
	return adapt.Gate{Radius: radius(gc[0], train.Feature(kind), GateQuantile), Adapt: gc[0], Pretrain: gc[1], Features: kind}
}

// gateFor returns whether t's gate (or the shared gate, e.SharedGate)
// keeps window i of s at the base model.
func (e *Evaluator) gateFor(t *Trained, s *Set) (func(i int) bool, error) {
	if e.SharedGate != "" {
		g, err := e.sharedGate()
		if err != nil {
			return nil, err
		}
		f := s.Feature(e.SharedGate)
		dim := g.Adapt.C
		return func(i int) bool { return g.Closed(g.Adapt, f[i*dim:(i+1)*dim]) }, nil
	}
	f := s.Feature(t.M.Features)
	dim := len(f) / len(s.Windows)
	gc, err := e.gateCents(t.M.Features)
	if err != nil {
		return nil, err
	}
	return func(i int) bool { return gated(t, gc, f[i*dim:(i+1)*dim]) }, nil
}

// gated says whether feature x keeps the base model: it lies farther from
// t's training centroids than t.Radius, or nearer the pretraining
// centroids gc[1] than the adaptation centroids gc[0] (when given).
func gated(t *Trained, gc [2]*cluster.Centroids, x []float32) bool {
	g := adapt.Gate{Radius: t.Radius, Adapt: gc[0], Pretrain: gc[1]}
	return g.Closed(t.Cents, x)
}
