package train

import (
	"fmt"
	"math"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
)

// AdamW is the optimiser: one first- and second-moment tensor per
// parameter, on the device. Weight decay (decoupled, as in Loshchilov &
// Hutter) applies to the 2-D tensors only, the weight matrices and the wte and
// wpe embeddings, as GPT-2 reproductions (nanoGPT, llm.c) do; biases and
// LayerNorm gains and biases are never decayed, since pulling a gain towards 0
// or a bias towards 0 is not regularisation of the function's complexity.
// Gradients are clipped to a global L2 norm: GradNormSq sums every
// gradient's squares on the device and each AdamW call scales its gradient
// by min(1, ClipNorm/norm) with no host round trip.
type AdamW struct {
	Beta1, Beta2, Eps float32
	WeightDecay       float32 // applied to 2-D parameters only
	ClipNorm          float32 // <= 0: no clipping
	Step              int     // updates applied so far

	b      gpu.TrainBackend
	m, v   []gpu.Tensor // moments, aligned with the model's Params
	decay  []bool       // whether each parameter is decayed
	normSq gpu.Tensor   // (1) the squared global gradient norm
}

// NewAdamW allocates zeroed moments for every parameter of m.
func NewAdamW(m *Model, beta1, beta2, eps, weightDecay, clipNorm float32) (*AdamW, error) {
	return NewAdamWFor(m.B, m.Params(), beta1, beta2, eps, weightDecay, clipNorm)
}

// NewAdamWFor allocates zeroed moments for params on b (any parameter set,
// e.g. an adapter's); 2-D parameters are decayed.
func NewAdamWFor(b gpu.TrainBackend, params []gpu.Tensor, beta1, beta2, eps, weightDecay, clipNorm float32) (*AdamW, error) {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay, ClipNorm: clipNorm, b: b}
	var err error
	if o.normSq, err = b.Alloc(gpu.F32, 1); err != nil {
		return nil, fmt.Errorf("train: optimiser: %w", err)
	}
	for _, p := range params {
		mt, err1 := b.Alloc(gpu.F32, p.Shape()...)
		vt, err2 := b.Alloc(gpu.F32, p.Shape()...)
		if mt != nil {
			o.m = append(o.m, mt)
		}
		if vt != nil {
			o.v = append(o.v, vt)
		}
		if err1 != nil || err2 != nil {
			o.Free()
			return nil, fmt.Errorf("train: optimiser state: %v %v", err1, err2)
		}
		b.Zero(mt)
		b.Zero(vt)
		o.decay = append(o.decay, len(p.Shape()) == 2)
	}
	return o, nil
}

// SetDecay replaces which parameters are decayed (by default the 2-D
// ones): mask is aligned with the parameters the optimiser was made for,
// e.g. an adapter's gate network decayed and its low-rank pair not.
func (o *AdamW) SetDecay(mask []bool) error {
	if len(mask) != len(o.decay) {
		return fmt.Errorf("train: decay mask of %d parameters for an optimiser of %d", len(mask), len(o.decay))
	}
	o.decay = slices.Clone(mask)
	return nil
}

// Free releases the optimiser's tensors.
func (o *AdamW) Free() {
	freeAll(o.b, o.m)
	freeAll(o.b, o.v)
	if o.normSq != nil {
		o.b.Free(o.normSq)
	}
	o.m, o.v, o.normSq = nil, nil, nil
}

// GradNorm records the squared global norm of grads into the optimiser's
// normSq tensor (read by Update for clipping; ReadNormSq reads it back).
func (o *AdamW) GradNorm(grads []gpu.Tensor) {
	o.b.GradNormSq(o.normSq, grads...)
}

// ReadNormSq flushes and returns the squared norm recorded by GradNorm.
func (o *AdamW) ReadNormSq() (float64, error) {
	v, err := o.b.ReadF32(o.normSq)
	if err != nil {
		return 0, err
	}
	return float64(v[0]), nil
}

// Update records one AdamW step of every parameter with learning rate lr,
// clipping with the norm GradNorm recorded. params and grads are aligned
// with the moments (the model's Params and Grads).
func (o *AdamW) Update(params, grads []gpu.Tensor, lr float64) {
	o.Step++
	for i, p := range params {
		wd := float32(0)
		if o.decay[i] {
			wd = o.WeightDecay
		}
		var ns gpu.Tensor
		if o.ClipNorm > 0 {
			ns = o.normSq
		}
		o.b.AdamW(p, o.m[i], o.v[i], grads[i], ns, gpu.AdamWParams{
			LR: float32(lr), Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps,
			WeightDecay: wd, Step: o.Step, ClipNorm: o.ClipNorm,
		})
	}
}

// Moments are the first and second moment tensors, aligned with Params.
func (o *AdamW) Moments() (m, v []gpu.Tensor) { return o.m, o.v }

// Schedule is the learning rate over steps 1..Steps: a linear warm-up from
// LR/Warmup to LR over the first Warmup steps, then a cosine decay from LR
// to MinLR at step Steps (and MinLR after it).
type Schedule struct {
	LR, MinLR float64
	Warmup    int
	Steps     int
}

// At is the learning rate of step (1-based).
func (s Schedule) At(step int) float64 {
	if step <= s.Warmup {
		return s.LR * float64(step) / float64(s.Warmup)
	}
	span := s.Steps - s.Warmup
	if span <= 0 || step >= s.Steps {
		if span <= 0 {
			return s.LR
		}
		return s.MinLR
	}
	frac := float64(step-s.Warmup) / float64(span)
	return s.MinLR + 0.5*(s.LR-s.MinLR)*(1+math.Cos(math.Pi*frac))
}
