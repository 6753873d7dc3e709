package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// Options configures Run.
type Options struct {
	Config
	Out     string           // output dir: checkpoint/, loss.png
	Resume  bool             // continue from Out's checkpoint (a fresh start if there is none)
	Data    *Dataset         // Train sampled for steps, Val evaluated per domain
	Backend gpu.TrainBackend // where to train
	// Init is the initial weights (TensorSpec(Model) with data); nil means
	// model.RandomInit(Model, Seed).
	Init []model.HostTensor
	// Progress, if set, is called after every step.
	Progress func(Progress)
	// SaveExtra, if set, is called with each checkpoint's dir before it is
	// swapped in, to add files (e.g. the tokenizer's).
	SaveExtra func(dir string) error
	// Log receives one line per evaluation, checkpoint and notable event;
	// nil discards them.
	Log io.Writer

	afterBackward func(step int, m *Model) // test hook, see Trainer
}

// Progress is the state of a run after a step.
type Progress struct {
	Step, Steps  int
	Loss         float64 // this step's training loss
	LR, GradNorm float64
	TokensPerSec float64 // training throughput so far (steps only, no evaluation)
}

// Result is what Run returns.
type Result struct {
	Step         int     // steps completed
	Loss         float64 // the last step's training loss
	TokensPerSec float64 // over the steps this call ran
	Val          *EvalPoint
	History      History
}

// LossPlot is the loss curve's file name under Out.
const LossPlot = "loss.png"

// Run trains a model under o: AdamW steps on batches sampled from o.Data.Train
// (see Sampler), evaluation of every domain's validation stream every
// EvalEvery steps and at the end (with the loss curve redrawn each time),
// and a checkpoint every SaveEvery steps, at the end and when ctx is
// cancelled. A run whose Out already has a checkpoint needs Resume; a
// checkpoint made with another configuration is refused with the
// differences. A non-finite loss or gradient norm stops the run with a
// *NonFiniteError naming the step; the last checkpoint (the last good state)
// is kept as it is.
//
// (Over 80 lines: setup, resume, the step loop, evaluation and checkpoints all
// work on one model, optimiser and log.)
func Run(ctx context.Context, o Options) (*Result, error) {
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Data == nil || o.Backend == nil {
		return nil, fmt.Errorf("train: Run needs Data and a Backend")
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	ckpt := findCheckpoint(o.Out)
	if ckpt != "" && !o.Resume {
		return nil, fmt.Errorf("train: %s already holds a checkpoint: pass --resume to continue it, or choose another --out", o.Out)
	}
	smp, err := NewSampler(o.Data.Train, cfg.Batch, cfg.Seq, cfg.Seed)
	if err != nil {
		return nil, err
	}
	init := o.Init
	if init == nil {
		init = model.RandomInit(cfg.Model, cfg.Seed)
	}
	m, err := New(o.Backend, cfg.Model, init)
	if err != nil {
		return nil, err
	}
	defer m.Free()
	opt, err := NewAdamW(m, float32(cfg.Beta1), float32(cfg.Beta2), float32(cfg.Eps), float32(cfg.WeightDecay), float32(cfg.ClipNorm))
	if err != nil {
		return nil, err
	}
	defer opt.Free()
	var hist History
	switch {
	case ckpt != "":
		if hist, err = loadCheckpoint(ckpt, cfg, m, opt, smp); err != nil {
			return nil, err
		}
		fmt.Fprintf(logw, "resumed %s at step %d of %d\n", ckpt, opt.Step, cfg.Steps)
	case o.Resume:
		fmt.Fprintf(logw, "no checkpoint in %s: starting afresh\n", o.Out)
	}
	tr := &Trainer{M: m, Opt: opt, Sched: cfg.Schedule()}
	if o.afterBackward != nil {
		tr.afterBackward = func() { o.afterBackward(opt.Step+1, m) }
	}
	val := map[string][]Batch{}
	for _, d := range o.Data.Domains {
		val[d] = EvalBatches(o.Data.Val[d], cfg.Batch, cfg.Seq, cfg.EvalTokens)
	}
	res := &Result{Step: opt.Step, History: hist}
	saved := opt.Step
	save := func() error {
		if opt.Step == saved {
			return nil
		}
		if err := saveCheckpoint(o.Out, cfg, m, opt, smp, res.History, o.SaveExtra); err != nil {
			return err
		}
		saved = opt.Step
		fmt.Fprintf(logw, "step %d: checkpoint saved to %s\n", opt.Step, CheckpointDir(o.Out))
		return nil
	}
	var stepTime time.Duration
	tokens := 0
	for opt.Step < cfg.Steps {
		if err := ctx.Err(); err != nil {
			if serr := save(); serr != nil {
				return res, errors.Join(err, serr)
			}
			return res, fmt.Errorf("train: stopped at step %d: %w", opt.Step, err)
		}
		t0 := time.Now()
		r, err := tr.Step(smp.Next())
		if err != nil {
			var nf *NonFiniteError
			if errors.As(err, &nf) {
				kept := "no checkpoint was saved yet"
				if saved > 0 {
					kept = fmt.Sprintf("the checkpoint of step %d in %s is kept", saved, CheckpointDir(o.Out))
				}
				fmt.Fprintf(logw, "step %d: loss %g, gradient norm %g: stopping; %s\n", nf.Step, nf.Loss, nf.GradNorm, kept)
				return res, fmt.Errorf("%w (%s)", err, kept)
			}
			return res, err
		}
		stepTime += time.Since(t0)
		tokens += r.Tokens
		res.Step, res.Loss = r.Step, r.Loss
		res.TokensPerSec = float64(tokens) / stepTime.Seconds()
		res.History.Train = append(res.History.Train, TrainPoint{Step: r.Step, Loss: r.Loss})
		if o.Progress != nil {
			o.Progress(Progress{Step: r.Step, Steps: cfg.Steps, Loss: r.Loss, LR: r.LR, GradNorm: r.GradNorm, TokensPerSec: res.TokensPerSec})
		}
		last := r.Step == cfg.Steps
		if (cfg.EvalEvery > 0 && r.Step%cfg.EvalEvery == 0) || last {
			ep, err := evaluate(m, o.Data.Domains, val, r.Step)
			if err != nil {
				return res, err
			}
			res.Val = ep
			res.History.Val = append(res.History.Val, *ep)
			fmt.Fprintf(logw, "step %d: train loss %.4f, %s, %.0f tokens/s\n", r.Step, r.Loss, formatEval(ep), res.TokensPerSec)
			if err := WriteLossPlot(filepath.Join(o.Out, LossPlot), res.History); err != nil {
				return res, err
			}
		}
		if (cfg.SaveEvery > 0 && r.Step%cfg.SaveEvery == 0) || last {
			if err := save(); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// evaluate computes the validation loss of every domain and over all of
// their tokens.
func evaluate(m *Model, domains []string, val map[string][]Batch, step int) (*EvalPoint, error) {
	ep := &EvalPoint{Step: step, ByDomain: map[string]float64{}}
	var sum float64
	total := 0
	for _, d := range domains {
		if len(val[d]) == 0 {
			continue
		}
		l, n, err := Eval(m, val[d])
		if err != nil {
			return nil, err
		}
		ep.ByDomain[d] = l
		sum += l * float64(n)
		total += n
	}
	ep.Loss = math.NaN()
	if total > 0 {
		ep.Loss = sum / float64(total)
	}
	return ep, nil
}

func formatEval(ep *EvalPoint) string {
	var ds []string
	for d := range ep.ByDomain {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	parts := []string{fmt.Sprintf("val loss %.4f", ep.Loss)}
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s %.3f", d, ep.ByDomain[d]))
	}
	return strings.Join(parts, " ")
}
