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
	} else if tr, err = Train(tb, mdl.W.Head(), base, m, d, o, progress); err != nil {
		return nil, err
	}
	if _, err := GateAndSelfCheck(tr, d, fit, o.Batch); err != nil {
		return nil, err
	}
	return tr, nil
}

// GateAndSelfCheck gives a trained hyper adapter, or a LoRA trained with
// features (and so with the centroids of its own training windows), the
// gate of its training windows d (and of the pretraining windows fit) and
// the self-check, as the runtime serves them; a LoRA also gets its
// centroids in the file. It reports whether the adapter was one of these
// (the others are left as they are).
func GateAndSelfCheck(tr *Trained, d, fit *Set, batch int) (bool, error) {
	switch {
	case tr.M.Kind == KindLoRA && tr.Cents != nil && tr.Adapter.TrainingCentroids() == nil:
		// A LoRA with Features stores the centroids of its own training
		// windows, so that it can be gated and self-checked like a
		// hyper-network: the benchmark's fair control, shipped.
		a := tr.Adapter
		a.Meta.Features, a.Meta.Centroids = tr.M.Features, tr.Cents.K
		a.Tensors = append(a.Tensors, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{tr.Cents.K, tr.Cents.C}, Data: tr.Cents.Data})
		if err := a.Validate(); err != nil {
			return false, err
		}
	case tr.M.Kind == KindLoRA && tr.Cents != nil:
	case tr.M.Kind != KindHyper:
		return false, nil
	}
	g, err := GateFor(tr.Adapter, d, fit, batch, "")
	if err != nil {
		return false, err
	}
	if err := tr.Adapter.SetGate(g); err != nil {
		return false, err
	}
	tr.Adapter.Meta.SelfCheck = true
	return true, nil
}
