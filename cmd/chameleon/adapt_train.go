package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/train"
)

// loadForAdapters opens the model with f32 weights on a backend that can
// run the adapters' backward kernels, with the frozen base the adapters sit
// on; what names the job for the error when the backend cannot. The caller
// closes the session.
func (f *modelFlags) loadForAdapters(what string) (*session, gpu.TrainBackend, adapt.Base, error) {
	f.dtype = "f32"
	s, err := f.load()
	if err != nil {
		return nil, nil, adapt.Base{}, err
	}
	tb, ok := s.m.B.(gpu.TrainBackend)
	if !ok {
		s.close()
		return nil, nil, adapt.Base{}, fmt.Errorf("backend %s cannot %s", s.m.B.Name(), what)
	}
	base, err := adapt.BaseOfModel(s.m)
	if err != nil {
		s.close()
		return nil, nil, adapt.Base{}, err
	}
	return s, tb, base, nil
}

// adaptTrainOpts are adapt train's flags.
type adaptTrainOpts struct {
	mf                                                modelFlags
	corpus, method, out, adaptDoms, features, windows string
	asJSON                                            bool
	t, prompt, perDomain, fit, rank, epochs, batch    int
	budget, clusterSize                               int
	gateDrop, gateDecay                               float64
	lr                                                float64
	alpha                                             float32
	seed                                              uint64
}

// adaptTrainCmd trains one adapter and writes its file: the lifecycle's
// training step alone (adaptrun.TrainOne), for a model and corpus of the
// user's; `adapt bench` runs every method with seeds, tuning and controls.
func adaptTrainCmd() *cobra.Command {
	o := &adaptTrainOpts{}
	c := &cobra.Command{
		Use:   "train --method NAME --out FILE.safetensors",
		Short: "Train one adapter of the output projection on the adaptation domains (the shipped default's recipe: --method hyper-basis-fit --budget 68 --lr 1e-2 --cluster-size 64 --train 600 --dtype f32)",
		Long: `Trains one adapter on the training split of the corpus's adaptation domains
(--adapt-domains, default: the manifest's adapt role) with the base model
frozen, as ` + "`chameleon adapt bench`" + ` does for every method, and writes the
adapter file (OUT) and its loss curve (OUT without .safetensors + -loss.png).
Windows are --t tokens; features come from the first --prompt tokens. Methods:
` + adaptrun.MethodNames + ` (those with qkv, v3 or all in the name also update the decoder's
layers; generate, run, perplexity and serve apply them there).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			return o.run()
		},
	}
	o.mf.add(c)
	fl := c.Flags()
	fl.StringVar(&o.corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	fl.StringVar(&o.method, "method", "hyper-hidden", "the method: "+adaptrun.MethodNames)
	fl.StringVar(&o.out, "out", "", "adapter file to write (FILE.safetensors)")
	fl.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	fl.StringVar(&o.windows, "windows", "", "take the training and pretraining windows from this file (adapt bench --save-windows) instead of the corpus")
	fl.StringVar(&o.adaptDoms, "adapt-domains", "", "adaptation domains, comma-separated (default: the corpus's adapt role)")
	fl.StringVar(&o.features, "features", adapt.FeatureBoth, "features the experts route by and the table clusters on")
	fl.IntVar(&o.t, "t", 192, "tokens a window")
	fl.IntVar(&o.prompt, "prompt", 64, "prompt tokens a window: features come from them, the rest is scored")
	fl.IntVar(&o.perDomain, "train", 250, "training windows per adaptation domain")
	fl.IntVar(&o.fit, "fit", 100, "training windows per pretraining domain, for the gate's picture of the inputs the base model already serves (0: the gate keeps only its radius)")
	fl.IntVar(&o.rank, "rank", 8, "rank of the update")
	fl.IntVar(&o.budget, "budget", 0, budgetUsage)
	fl.Float64Var(&o.gateDrop, "gate-drop", 0, gateDropUsage)
	fl.Float64Var(&o.gateDecay, "gate-decay", 0, "weight decay of a gated basis's gate network (AdamW's, on its weight matrices alone)")
	fl.IntVar(&o.epochs, "epochs", 2, "passes over the training windows")
	fl.IntVar(&o.clusterSize, "cluster-size", 0, "training windows a cluster of a hyper-network (k-means cuts the training windows into n/size clusters; 0: the batch size)")
	fl.IntVar(&o.batch, "batch", adapt.DefaultBatchSize, "windows a batch (the cluster batch size)")
	fl.Float64Var(&o.lr, "lr", 1e-3, "peak learning rate (adapt bench chooses one per method on validation: 1e-3 for hyper-hidden, 3e-3 for hyper-basis and hyper-basis-fit at --budget 68, 1e-2 for hyper-basis-fit in clusters of 64)")
	fl.Float32Var(&o.alpha, "alpha", 1, "scale of the update")
	fl.Uint64Var(&o.seed, "seed", 1, "seed of window sampling, k-means, initialisation and batch order")
	return c
}

// run trains the adapter, writes it and its loss curve, and reports.
func (o *adaptTrainOpts) run() error {
	if err := o.check(); err != nil {
		return err
	}
	s, tb, base, err := o.mf.loadForAdapters("train adapters")
	if err != nil {
		return err
	}
	defer s.close()
	sets, doms, err := o.trainingSets(s)
	if err != nil {
		return err
	}
	d := sets.Train
	m, ok := adaptrun.MatchedMethods(o.rank, o.features, len(d.Domains), s.m.Cfg.NEmbd, s.m.Cfg.VocabSize, o.budget)[o.method]
	if !ok {
		return fmt.Errorf("--method %q: want one of %s", o.method, adaptrun.MethodNames)
	}
	if m, err = withGateDrop(m, o.gateDrop); err != nil {
		return err
	}
	if o.clusterSize < 0 || (o.clusterSize > 0 && m.Kind != adaptrun.KindHyper) {
		return fmt.Errorf("--cluster-size %d: want a positive size for a hyper method (0: the batch size)", o.clusterSize)
	}
	m.ClusterSize = o.clusterSize
	m.GateDecay = o.gateDecay
	if err := m.CheckGateDecay(); err != nil {
		return fmt.Errorf("--gate-decay %g: %w", o.gateDecay, err)
	}
	fmt.Fprintf(os.Stderr, "training %s on %d windows of %s\n", m.Name, len(d.Windows), strings.Join(doms, " "))
	tbar := newBar(o.method, "steps")
	plain := logProgress(os.Stderr, 30*time.Second)
	var hist train.History
	progress := func(step, steps int, loss float64) {
		tbar.ChangeMax(steps)
		tbar.Describe(fmt.Sprintf("%s loss %.3f", o.method, loss))
		_ = tbar.Set(step)
		plain(step, steps, fmt.Sprintf("%s loss %.3f", o.method, loss))
		hist.Train = append(hist.Train, train.TrainPoint{Step: step, Loss: loss})
	}
	opts := adaptrun.TrainOpts{Batch: o.batch, Epochs: o.epochs, LR: o.lr, Seed: o.seed, Alpha: o.alpha}
	tr, err := adaptrun.TrainOne(tb, s.m, base, m, d, sets.Fit, opts, progress)
	_ = tbar.Finish()
	if err != nil {
		return err
	}
	if err := adapt.Save(o.out, tr.Adapter); err != nil {
		return err
	}
	if err := train.WriteLossPlot(strings.TrimSuffix(o.out, ".safetensors")+"-loss.png", hist); err != nil {
		return err
	}
	first, last := tr.Losses[0], tr.Losses[len(tr.Losses)-1]
	if o.asJSON {
		return printJSON(os.Stdout, map[string]any{"method": o.method, "name": m.Name, "adapter": describeAdapter(tr.Adapter.Meta),
			"params": tr.NParams, "steps": len(tr.Losses), "first_loss": first, "last_loss": last, "out": filepath.Clean(o.out)})
	}
	fmt.Printf("%s: %d trainable parameters, %d steps, loss %.3f -> %.3f; %s\n", m.Name, tr.NParams, len(tr.Losses), first, last, filepath.Clean(o.out))
	return nil
}

// check refuses flags the training cannot use before anything is loaded:
// the output's name and directory, and the sizes and rate.
func (o *adaptTrainOpts) check() error {
	if o.out == "" || !strings.HasSuffix(o.out, ".safetensors") {
		return fmt.Errorf("--out %q: want a FILE.safetensors", o.out)
	}
	if err := checkOutDir("--out", o.out); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--rank", o.rank}, {"--epochs", o.epochs}, {"--batch", o.batch}} {
		if err := positive(f.name, f.v); err != nil {
			return err
		}
	}
	if o.windows == "" {
		if err := positive("--train", o.perDomain); err != nil {
			return err
		}
	}
	if !(o.lr > 0) || math.IsInf(o.lr, 1) {
		return fmt.Errorf("--lr %g: want a finite rate above 0", o.lr)
	}
	return nil
}

// trainingSets runs the base model over the training windows (--windows,
// else cut from the corpus) and the pretraining ones' prompts (for the
// gate), and names the adaptation domains.
func (o *adaptTrainOpts) trainingSets(s *session) (adaptrun.Sets, []string, error) {
	var w *adaptrun.Windows
	var roles map[string]string
	var err error
	if o.windows != "" {
		// The benchmark's own training windows (and the pretraining ones
		// the gate needs); its evaluation splits are not read.
		if w, err = adaptrun.LoadWindows(o.windows); err != nil {
			return adaptrun.Sets{}, nil, err
		}
		w.Keep("train", "fit")
		roles = w.Roles
	} else if w, roles, err = trainingWindows(s, o.corpus, o.adaptDoms, o.t, o.prompt, o.perDomain, o.fit, o.seed); err != nil {
		return adaptrun.Sets{}, nil, err
	}
	// The gate reads only the prompts of the pretraining windows.
	fitW := w.PromptsOnly()
	delete(fitW.Splits, "train")
	delete(w.Splits, "fit")
	sets, err := prepareWithBar(s, w)
	if err != nil {
		return sets, nil, err
	}
	if len(fitW.Splits["fit"]) > 0 {
		fs, err := prepareWithBar(s, fitW)
		if err != nil {
			return sets, nil, err
		}
		sets.Fit = fs.Fit
	}
	var doms []string
	for d, r := range roles {
		if r == adaptrun.RoleAdapt {
			doms = append(doms, d)
		}
	}
	sort.Strings(doms)
	return sets, doms, nil
}

// adaptGateCmd gives an existing hyper adapter the gate that adapt train
// and adapt bench store: computed from the corpus's adaptation and
// pretraining domains' training windows.
//
// (Over 80 lines: the command and its flags, one after the other.)
func adaptGateCmd() *cobra.Command {
	var mf modelFlags
	var corpus, windowsIn, in, out, adaptDoms, gateFeatures string
	var t, prompt, perDomain, fit, batch, selectN int
	var seed uint64
	var selfCheck, gateJSON bool
	c := &cobra.Command{
		Use:   "gate --adapter IN --out OUT",
		Short: "Store a gate in a hyper adapter: inputs far from its training clusters, or nearer the base model's own domains, keep the base model",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if in == "" || out == "" {
				return fmt.Errorf("--adapter and --out are required")
			}
			if err := checkOutDir("--out", out); err != nil {
				return err
			}
			if gateFeatures != "" {
				if _, err := adapt.FeatureDim(gateFeatures, 1); err != nil {
					return fmt.Errorf("--gate-features: %w", err)
				}
			}
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			a, err := loadAdapter(in, s.m)
			if err != nil {
				return err
			}
			var w *adaptrun.Windows
			if windowsIn != "" {
				if w, err = adaptrun.LoadWindows(windowsIn); err != nil {
					return err
				}
			} else if w, _, err = trainingWindows(s, corpus, adaptDoms, t, prompt, perDomain, fit, seed); err != nil {
				return err
			}
			// Only the training windows and the pretraining ones count, and
			// only their prompts.
			w = w.PromptsOnly()
			for k := range w.Splits {
				if k != "train" && k != "fit" {
					delete(w.Splits, k)
				}
			}
			sets, err := prepareWithBar(s, w)
			if err != nil {
				return err
			}
			g, err := adaptrun.GateFor(a, sets.Train, sets.Fit, batch, gateFeatures)
			if err != nil {
				return err
			}
			if err := a.SetGate(g); err != nil {
				return err
			}
			a.Meta.SelfCheck, a.Meta.Select = selfCheck, selectN
			if err := adapt.Save(out, a); err != nil { // validates: a selection it cannot serve is refused
				return err
			}
			if gateJSON {
				return printJSON(os.Stdout, map[string]any{"out": out, "adapter": describeAdapter(a.Meta), "gate_radius": a.Meta.GateRadius,
					"gate_adapt": a.Meta.GateAdapt, "gate_pretrain": a.Meta.GatePretrain, "gate_features": a.Meta.GateFeatures, "self_check": a.Meta.SelfCheck, "select": a.Meta.Select})
			}
			fmt.Printf("%s: %s\n", out, describeAdapter(a.Meta))
			return nil
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&in, "adapter", "", "hyper adapter file (or default)")
	fl.StringVar(&out, "out", "", "adapter file to write")
	fl.BoolVar(&gateJSON, "json", false, "print the stored gate as JSON")
	fl.StringVar(&corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	fl.StringVar(&windowsIn, "windows", "", "take the training and pretraining windows from this file (adapt bench --save-windows) instead of the corpus")
	fl.StringVar(&adaptDoms, "adapt-domains", "", "adaptation domains, comma-separated (default: the corpus's adapt role)")
	fl.IntVar(&t, "t", 192, "tokens a window (as the adapter was trained)")
	fl.IntVar(&prompt, "prompt", 64, "prompt tokens a window (as the adapter was trained)")
	fl.IntVar(&perDomain, "train", 250, "training windows per adaptation domain (the same seed draws the adapter's own)")
	fl.IntVar(&fit, "fit", 100, "training windows per pretraining domain")
	fl.IntVar(&batch, "batch", adapt.DefaultBatchSize, "windows a gate centroid summarises")
	fl.Uint64Var(&seed, "seed", 1, "seed of window sampling")
	fl.BoolVar(&selfCheck, "self-check", true, "also keep an update only where it lowers the prompt's own loss (adapt gatecurve replays it)")
	fl.StringVar(&gateFeatures, "gate-features", "", "give the gate features of its own (embed, hidden, embed+hidden), read by the gate alone, its radius around the adaptation domains' centroids: the gate the benchmark's --shared-gates rows score (default: the adapter's features, its radius around the training centroids)")
	fl.IntVar(&selectN, "select", 0, "with --self-check: choose each prompt's update among its N nearest training centroids' by the prompt's own loss (0: the nearest's)")
	return c
}

// prepareWithBar runs the base model over every split of w (16 windows a
// batch) with a progress bar.
func prepareWithBar(s *session, w *adaptrun.Windows) (adaptrun.Sets, error) {
	bar := newProgress("base model", "windows")
	sets, err := adaptrun.PrepareSets(s.m, w, 16, func(split string, done, total int) {
		bar.bar.Describe("base model over " + split)
		bar.desc = "base model windows over " + split
		bar.Set(done, total)
	})
	bar.Finish()
	return sets, err
}

// trainingWindows cuts the corpus's adaptation domains' training windows
// (perDomain each) and its pretraining domains' (fit each, for the gate),
// and returns them with the roles used.
func trainingWindows(s *session, corpus, adaptDoms string, t, prompt, perDomain, fit int, seed uint64) (*adaptrun.Windows, map[string]string, error) {
	cp, err := data.Open(corpus)
	if err != nil {
		return nil, nil, err
	}
	roles, err := benchRoles(cp, adaptDoms, "", "")
	if err != nil {
		return nil, nil, err
	}
	for d, r := range roles { // the adaptation domains train; the pretraining ones shape the gate
		if r == adaptrun.RoleHeldOut {
			delete(roles, d)
		}
	}
	w, err := adaptrun.BuildWindows(cp, s.tok, roles, t, prompt, adaptrun.Sizes{Train: perDomain, Fit: fit}, seed)
	return w, roles, err
}
