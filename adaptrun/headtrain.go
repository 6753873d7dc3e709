package adaptrun

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/train"
)

// headStages are the parameter subsets (indices in net.Params(); nil:
// all) that a head adapter trains in turn, each over an equal share of the
// epochs: every parameter at once, or for a staged gated basis
// (Method.Staged) its static pair, with every gate held at zero because
// the gate network's last layer starts at zero and does not move, and then
// the gate network on the frozen pair; for a warm-started one
// (Method.Warm) the pair alone and then everything.
func headStages(net *AdapterNet, m Method) [][]int {
	if !m.Staged && !m.Warm {
		return [][]int{nil}
	}
	all := make([]int, len(net.params))
	for i := range all {
		all[i] = i
	}
	pair := len(all) - 2 // NewAdapterNet puts the pair's A and B last
	if m.Warm {
		return [][]int{all[pair:], nil}
	}
	return [][]int{all[pair:], all[:pair]}
}

// gateDecayMask marks, among the parameters at indices only (nil: all),
// the gate network's weight matrices of a gated basis: the ones
// Method.GateDecay decays. NewAdapterNet puts the network's layers first,
// each as its matrix then its bias; nothing else is marked (a LoRA, an
// expert table or a hyper-network that generates its own pair decays
// nothing).
func gateDecayMask(net *AdapterNet, only []int) []bool {
	gates := 0
	if net.hyper != nil && net.pair != nil && net.Meta.Basis {
		gates = 2 * len(net.hyper.Layers)
	}
	if only == nil {
		only = make([]int, len(net.params))
		for i := range only {
			only[i] = i
		}
	}
	mask := make([]bool, len(only))
	for k, i := range only {
		mask[k] = i < gates && i%2 == 0
	}
	return mask
}

// trainHead runs the optimisation of a head adapter over the epochs'
// groups, stage by stage (headStages), each stage with its own AdamW and
// learning-rate schedule; it appends every step's loss to out.Losses.
// reassign, when given, makes epoch e's groups at its start instead
// (Method.Select); nil groups keep the precomputed ones.
func trainHead(tb gpu.TrainBackend, net *AdapterNet, m Method, d *Set, o TrainOpts, epochs [][]group, reassign func(e int) ([]group, error), rng *rand.Rand, out *Trained, progress func(step, steps int, loss float64)) error {
	stages := headStages(net, m)
	if len(epochs)%len(stages) != 0 {
		return fmt.Errorf("adaptrun: %s: %d epochs for %d stages", m.Name, len(epochs), len(stages))
	}
	per := len(epochs) / len(stages)
	steps := 0
	for _, gs := range epochs {
		steps += len(gs)
	}
	dropout := rand.New(rand.NewPCG(o.Seed, 11))
	for si, only := range stages {
		tr := &AdapterTrainer{N: net, Only: only, Rng: dropout}
		opt, err := train.NewAdamWFor(tb, tr.pick(net.Params()), 0.9, 0.999, 1e-8, float32(m.GateDecay), 1)
		if err != nil {
			return err
		}
		if err := opt.SetDecay(gateDecayMask(net, only)); err != nil {
			opt.Free()
			return err
		}
		stage := epochs[si*per : (si+1)*per]
		n := 0
		for _, gs := range stage {
			n += len(gs)
		}
		tr.Opt = opt
		tr.Sched = train.Schedule{LR: o.LR, MinLR: o.LR / 10, Warmup: min(20, n/10), Steps: n}
		for ei, gs := range stage {
			if reassign != nil {
				ng, err := reassign(si*per + ei)
				if err != nil {
					opt.Free()
					return fmt.Errorf("adaptrun: %s: %w", m.Name, err)
				}
				if ng != nil {
					if len(ng) != len(gs) {
						opt.Free()
						return fmt.Errorf("adaptrun: %s: epoch %d reassigned into %d batches, not %d", m.Name, si*per+ei, len(ng), len(gs))
					}
					gs = ng
				}
			}
			for _, gi := range rng.Perm(len(gs)) {
				// the loss is a mean over the rows with a target:
				// the others (a window's prompt) need no logits
				bt := d.scoredBatch(gs[gi], 1)
				if o.allRows {
					bt = d.batch(gs[gi], 1)
				}
				if m.GateDrop > 0 {
					bt.ZeroGates = make([]bool, bt.K)
					for k := range bt.ZeroGates {
						bt.ZeroGates[k] = dropout.Float64() < m.GateDrop
					}
				}
				loss, _, err := tr.Step(bt)
				if err != nil {
					opt.Free()
					return fmt.Errorf("adaptrun: %s: %w", m.Name, err)
				}
				out.Losses = append(out.Losses, loss)
				if progress != nil {
					progress(len(out.Losses), steps, loss)
				}
			}
		}
		opt.Free()
	}
	return nil
}

// AdapterTrainer runs AdamW steps of an AdapterNet.
type AdapterTrainer struct {
	N     *AdapterNet
	Opt   *train.AdamW // made for the parameters Only names
	Sched train.Schedule
	Rng   *rand.Rand // dropout masks
	// Only lists the indices in N.Params() that the steps update (nil:
	// all); the others stay as they are.
	Only []int
}

// pick is the elements of ts at the trainer's indices (all of them when
// Only is nil).
func (tr *AdapterTrainer) pick(ts []gpu.Tensor) []gpu.Tensor {
	if tr.Only == nil {
		return ts
	}
	out := make([]gpu.Tensor, len(tr.Only))
	for i, j := range tr.Only {
		out[i] = ts[j]
	}
	return out
}

// Step runs one optimisation step on a batch and returns its mean loss and
// the gradient norm before clipping. A non-finite loss or norm applies no
// update and returns a *train.NonFiniteError.
func (tr *AdapterTrainer) Step(bt AdapterBatch) (loss, norm float64, err error) {
	s, err := tr.N.forward(bt, tr.Rng)
	if err != nil {
		return 0, 0, err
	}
	defer s.free()
	if err := s.backward(bt.Cluster); err != nil {
		return 0, 0, err
	}
	tr.Opt.GradNorm(tr.pick(tr.N.grads))
	ls, err := s.rowLosses()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range ls {
		loss += float64(l)
	}
	loss /= float64(max(s.rows, 1))
	nsq, err := tr.Opt.ReadNormSq()
	if err != nil {
		return 0, 0, err
	}
	norm = math.Sqrt(nsq)
	step := tr.Opt.Step + 1
	if !finite(loss) || !finite(norm) {
		return loss, norm, &train.NonFiniteError{Step: step, Loss: loss, GradNorm: norm}
	}
	tr.Opt.Update(tr.pick(tr.N.params), tr.pick(tr.N.grads), tr.Sched.At(step))
	return loss, norm, nil
}
