package adaptrun

import (
	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/train"
)

// TrainOne is the lifecycle's training step for one method alone (as
// `chameleon adapt train` runs it, and Run does for every method): m
// trained on d with the base model mdl frozen, through a train.Model of
// mdl's weights for a method that updates decoder sites (m.Deep), else on
// tb with mdl's embeddings. A hyper adapter (and a LoRA with Features,
// which also stores its training centroids) then stores its gate, computed
// from d and fit (the pretraining domains' windows; nil: radius only; batch
// windows a centroid), and self-checks. progress is as Train's.
func TrainOne(tb gpu.TrainBackend, mdl *model.Model, base adapt.Base, m Method, d, fit *Set, o TrainOpts, progress func(step, steps int, loss float64)) (*Trained, error) {
	var tr *Trained
	var err error
	if len(m.Deep) > 0 {
		tm, err := train.FromModel(tb, mdl)
		if err != nil {
			return nil, err
		}
		defer tm.Free()
		tr, err = TrainDeep(&DeepTrainer{M: tm}, base, m, d, o, progress)
		if err != nil {
			return nil, err
		}
	} else if tr, err = Train(tb, mdl.W.Wte, base, m, d, o, progress); err != nil {
		return nil, err
	}
	switch {
	case m.Kind == KindLoRA && tr.Cents != nil:
		// A LoRA with Features stores the centroids of its own training
		// windows, so that it can be gated and self-checked like a
		// hyper-network: the benchmark's fair control, shipped.
		a := tr.Adapter
		a.Meta.Features, a.Meta.Centroids = m.Features, tr.Cents.K
		a.Tensors = append(a.Tensors, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{tr.Cents.K, tr.Cents.C}, Data: tr.Cents.Data})
		if err := a.Validate(); err != nil {
			return nil, err
		}
	case m.Kind != KindHyper:
		return tr, nil
	}
	g, err := GateFor(tr.Adapter, d, fit, o.Batch)
	if err != nil {
		return nil, err
	}
	if err := tr.Adapter.SetGate(g); err != nil {
		return nil, err
	}
	tr.Adapter.Meta.SelfCheck = true
	return tr, nil
}
