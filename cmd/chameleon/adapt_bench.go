package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/train"
)

// adaptBenchOpts are adapt bench's flags.
type adaptBenchOpts struct {
	mf                                                    modelFlags
	corpus, windowsIn, saveWindows, out, methods, primary string
	lrs, adaptDoms, heldDoms, pretrainDoms, features      string
	epochs                                                string
	t, prompt, rank, seeds, batch, bootstrap              int
	budget                                                int
	gateDrop                                              float64
	clusterSizes, gateDecays                              string
	sharedGates, checkSlacks                              string
	sz                                                    adaptrun.Sizes
	alpha                                                 float32
	seed                                                  uint64
	prepareOnly                                           bool
	fromJSON                                              string
}

func adaptBenchCmd() *cobra.Command {
	o := &adaptBenchOpts{}
	c := &cobra.Command{
		Use:   "bench --out DIR",
		Short: "The domain-shift benchmark: every adapter method against the base model, a fitted temperature and controls, with seeds and bootstrap intervals",
		Long: `Trains every adapter method on the adaptation domains' train split (the base
model never saw these domains), chooses each method's learning rate on their
validation split, and scores every method on their test split under the
groupings it is meant for (ChamaleonLLM: clustered test batches, online
assignment to the training centroids, random batches) and two controls (the
mean generated update for everyone; shuffled cluster assignments), with
--seeds training seeds and paired bootstrap 95% intervals. Windows are --t
tokens; features come from the first --prompt tokens and only the rest is
scored. The pretraining and held-out domains' test windows check that the
adapters do no harm where they were not trained.

Writes OUT/bench.md, OUT/bench.json, OUT/bench.png and the first seed's
hyper-network of every ChamaleonLLM method and the gated LoRAs (OUT/<method>.safetensors).
--save-windows writes the windows (token ids) so that a machine without the
corpus can run the benchmark with --windows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if o.fromJSON != "" {
				return benchFromJSON(o.fromJSON, o.out, o.primary, o.rank, o.budget, o.features)
			}
			return o.run()
		},
	}
	o.mf.add(c)
	fl := c.Flags()
	fl.StringVar(&o.corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	fl.StringVar(&o.windowsIn, "windows", "", "read the windows from this file (written by --save-windows) instead of the corpus")
	fl.StringVar(&o.saveWindows, "save-windows", "", "write the windows to this file")
	fl.BoolVar(&o.prepareOnly, "prepare-only", false, "with --save-windows: stop after writing the windows")
	fl.StringVar(&o.out, "out", "", "output dir")
	fl.StringVar(&o.adaptDoms, "adapt-domains", "", "adaptation domains, comma-separated (default: the corpus's adapt role)")
	fl.StringVar(&o.heldDoms, "heldout-domains", "", "held-out domains (default: the corpus's heldout role)")
	fl.StringVar(&o.pretrainDoms, "pretrain-domains", "", "pretraining domains scored for harm (default: the corpus's pretrain role)")
	fl.IntVar(&o.t, "t", 192, "tokens a window")
	fl.IntVar(&o.prompt, "prompt", 64, "prompt tokens a window: features come from them, the rest is scored")
	fl.IntVar(&o.sz.Train, "train", 300, "training windows per adaptation domain")
	fl.IntVar(&o.sz.Validation, "val", 60, "validation windows per adaptation domain")
	fl.IntVar(&o.sz.Test, "test", 150, "test windows per adaptation domain")
	fl.IntVar(&o.sz.Harm, "harm", 60, "test windows per pretraining and held-out domain")
	fl.IntVar(&o.sz.HarmVal, "harm-val", 60, "validation windows per pretraining domain: with the adaptation domains' validation windows, the mixed stream --check-slacks chooses on (the held-out domains get none)")
	fl.IntVar(&o.sz.Fit, "fit", 100, "training windows per pretraining domain: the gate's picture of the inputs the base model already serves (0: no such gate)")
	fl.Uint64Var(&o.seed, "seed", 1, "seed of window sampling")
	fl.StringVar(&o.methods, "methods", "lora,experts,table,hyper-both,hyper-hidden,hyper-embed,hyper-paper,lora-matched", "methods, comma-separated, in the order they run")
	fl.StringVar(&o.primary, "primary", adaptrun.PrimaryAuto, "the ChamaleonLLM method tested against the baselines (its online row); auto: the one best on validation")
	fl.StringVar(&o.features, "features", adapt.FeatureBoth, "features the experts route by and the table clusters on (embed, hidden, embed+hidden)")
	fl.StringVar(&o.lrs, "lrs", "3e-4,1e-3,3e-3,1e-2,3e-2", "learning-rate grid")
	fl.IntVar(&o.seeds, "seeds", 3, "training seeds")
	fl.StringVar(&o.epochs, "epochs", "2", "passes over the training windows; several, comma-separated (e.g. 2,4), are a grid chosen on validation with the rate")
	fl.IntVar(&o.batch, "batch", adapt.DefaultBatchSize, "windows a batch (the cluster batch size)")
	fl.StringVar(&o.clusterSizes, "cluster-sizes", "", clusterSizesUsage)
	fl.StringVar(&o.gateDecays, "gate-decays", "", gateDecaysUsage)
	fl.IntVar(&o.rank, "rank", 8, "rank of every low-rank update")
	fl.IntVar(&o.budget, "budget", 0, budgetUsage)
	fl.Float64Var(&o.gateDrop, "gate-drop", 0, gateDropUsage)
	fl.StringVar(&o.sharedGates, "shared-gates", "", "also score every gated row behind one gate all methods share, for each feature space named (embed, hidden, embed+hidden; comma-separated): its radius around the adaptation domains' own training centroids, not an adapter's, so that the gated rows of two methods differ only in their updates")
	fl.StringVar(&o.checkSlacks, "check-slacks", "", "a grid of self-check slacks, nats a prompt token, comma-separated (e.g. 0,0.02,0.05,0.1): each self-checked row keeps an update whose prompt's loss rises by less than its slack, chosen on the mixed validation stream (needs windows with the pretraining domains' validation split, --harm-val); empty: the plain check")
	fl.Float32Var(&o.alpha, "alpha", 1, "scale of the update")
	fl.IntVar(&o.bootstrap, "bootstrap", 1000, "paired bootstrap resamples")
	fl.StringVar(&o.fromJSON, "from-json", "", "redraw the report from bench.json files (comma-separated: the rows of later files are added to the first's, base and temperature rows skipped) into --out, with --primary")
	return c
}

// run cuts (or reads) the windows, runs the base model over them, runs
// adaptrun.Run on every method and writes the report and the adapters.
func (o *adaptBenchOpts) run() error {
	s, tb, base, err := o.mf.loadForAdapters("train adapters")
	if err != nil {
		return err
	}
	defer s.close()
	w, err := o.windows(s)
	if err != nil || w == nil { // nil: --prepare-only
		return err
	}
	if o.out == "" {
		return fmt.Errorf("--out is required")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	for _, split := range []string{"train", "validation", "test"} {
		if len(w.Splits[split]) == 0 {
			return fmt.Errorf("the windows have no %s split", split)
		}
	}
	// The flags are checked before the base model's long pass over the
	// windows.
	cfg, known, err := o.config(s, len(splitDomains(w.Splits["train"])))
	if err != nil {
		return err
	}
	if len(cfg.CheckSlacks) > 0 && len(w.Splits["harm-validation"]) == 0 {
		return fmt.Errorf("--check-slacks: the windows have no pretraining validation split to choose on (cut them with --harm-val > 0; windows files from before 2026-12-06 have none)")
	}
	sets, err := prepareWithBar(s, w)
	if err != nil {
		return err
	}
	for _, st := range []*adaptrun.Set{sets.Train, sets.Validation, sets.Test, sets.Harm, sets.Fit} {
		if st != nil {
			fmt.Fprintf(os.Stderr, "%s: %d windows (%s)\n", st.Name, len(st.Windows), strings.Join(st.Domains, " "))
		}
	}
	bar := newBar("training", "steps")
	cfg.Progress = barProgress(bar, logProgress(os.Stderr, 30*time.Second))
	e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Head(), Base: base, Batch: o.batch, Seed: 1}
	for _, m := range cfg.Methods {
		if len(m.Deep) > 0 && e.Deep == nil {
			tm, err := train.FromModel(tb, s.m)
			if err != nil {
				return err
			}
			defer tm.Free()
			e.Deep = &adaptrun.DeepTrainer{M: tm}
		}
	}
	res, firsts, err := adaptrun.Run(e, sets, w, cfg)
	_ = bar.Finish()
	if err != nil {
		return err
	}
	res.Model = s.label
	if err := saveFirstAdapters(firsts, known, sets, o.batch, o.out); err != nil {
		return err
	}
	return writeBenchReport(res, o.out)
}

// splitDomains is the distinct domains of ws.
func splitDomains(ws []adaptrun.Window) map[string]bool {
	ds := map[string]bool{}
	for _, x := range ws {
		ds[x.Domain] = true
	}
	return ds
}

// windows reads --windows or cuts them from the corpus, and writes them to
// --save-windows; nil windows (and no error) with --prepare-only.
func (o *adaptBenchOpts) windows(s *session) (*adaptrun.Windows, error) {
	var w *adaptrun.Windows
	if o.windowsIn != "" {
		var err error
		if w, err = adaptrun.LoadWindows(o.windowsIn); err != nil {
			return nil, err
		}
	} else {
		cp, err := data.Open(o.corpus)
		if err != nil {
			return nil, err
		}
		roles, err := benchRoles(cp, o.adaptDoms, o.heldDoms, o.pretrainDoms)
		if err != nil {
			return nil, err
		}
		if w, err = adaptrun.BuildWindows(cp, s.tok, roles, o.t, o.prompt, o.sz, o.seed); err != nil {
			return nil, err
		}
	}
	if o.saveWindows != "" {
		if err := w.Save(o.saveWindows); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "windows written to %s\n", o.saveWindows)
		if o.prepareOnly {
			return nil, nil
		}
	}
	return w, nil
}

// config is the benchmark's configuration from the flags (the methods by
// name, the parameter-matched LoRA sized to the primary hyper-network, the
// learning-rate grid) and the methods it knows by name; nAdapt is the
// number of adaptation domains.
func (o *adaptBenchOpts) config(s *session, nAdapt int) (adaptrun.Config, map[string]adaptrun.Method, error) {
	var cfg adaptrun.Config
	var err error
	if cfg.LRs, err = parseRates(o.lrs); err != nil {
		return cfg, nil, err
	}
	if cfg.EpochGrid, err = parseEpochs(o.epochs); err != nil {
		return cfg, nil, err
	}
	sizes, err := parseClusterSizes(o.clusterSizes)
	if err != nil {
		return cfg, nil, err
	}
	decays, err := parseDecays(o.gateDecays)
	if err != nil {
		return cfg, nil, err
	}
	cfgC, cfgV := s.m.Cfg.NEmbd, s.m.Cfg.VocabSize
	known := adaptrun.Methods(o.rank, o.features, nAdapt, 1)
	pm, ok := known[o.primary]
	if o.primary == adaptrun.PrimaryAuto {
		pm, ok = known["hyper-both"], true // the parameter-matched LoRA matches the head-only hyper-network
	}
	if !ok || pm.Kind != adaptrun.KindHyper {
		return cfg, nil, fmt.Errorf("--primary %q: want auto or one of the hyper methods (%s)", o.primary, adaptrun.MethodNames)
	}
	if o.budget > 0 {
		known = adaptrun.MatchedMethods(o.rank, o.features, nAdapt, cfgC, cfgV, o.budget)
	} else {
		known = adaptrun.Methods(o.rank, o.features, nAdapt, adaptrun.MatchedRank(pm, cfgC, cfgV))
	}
	if cfg.Methods, err = o.pickMethods(known, sizes, decays); err != nil {
		return cfg, nil, err
	}
	if o.sharedGates != "" {
		for _, k := range strings.Split(o.sharedGates, ",") {
			k = strings.TrimSpace(k)
			if _, err := adapt.FeatureDim(k, cfgC); err != nil || k == "" {
				return cfg, nil, fmt.Errorf("--shared-gates: feature space %q: want embed, hidden or embed+hidden", k)
			}
			cfg.SharedGates = append(cfg.SharedGates, k)
		}
	}
	if o.checkSlacks != "" {
		for _, f := range strings.Split(o.checkSlacks, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return cfg, nil, fmt.Errorf("--check-slacks %q: want numbers >= 0, comma-separated", o.checkSlacks)
			}
			cfg.CheckSlacks = append(cfg.CheckSlacks, v)
		}
	}
	cfg.Primary = adaptrun.PrimaryAuto
	if o.primary != adaptrun.PrimaryAuto {
		cfg.Primary = known[o.primary].Name
	}
	cfg.Seeds, cfg.Bootstrap, cfg.Log = o.seeds, o.bootstrap, os.Stderr
	cfg.Opts = adaptrun.TrainOpts{Batch: o.batch, Epochs: cfg.EpochGrid[0], Alpha: o.alpha}
	if len(cfg.EpochGrid) == 1 {
		cfg.EpochGrid = nil
	}
	if len(sizes) > 1 {
		cfg.ClusterGrid = sizes
	}
	if len(decays) > 1 {
		cfg.DecayGrid = decays
	}
	label, out := s.label, o.out
	cfg.Checkpoint = func(r *adaptrun.Result) {
		r.Model = label
		if err := r.WriteJSON(filepath.Join(out, "bench-partial.json"), r.Summarise()); err != nil {
			fmt.Fprintf(os.Stderr, "checkpoint: %v\n", err)
		}
	}
	return cfg, known, nil
}

// pickMethods is --methods' methods from known, each with --gate-drop's
// rate, and the one cluster size and gate decay when the flags name one
// (several are a grid, Config.ClusterGrid and DecayGrid); a gate decay
// with no gated basis to decay is refused.
func (o *adaptBenchOpts) pickMethods(known map[string]adaptrun.Method, sizes []int, decays []float64) ([]adaptrun.Method, error) {
	var out []adaptrun.Method
	var err error
	bases := false
	for _, n := range strings.Split(o.methods, ",") {
		m, ok := known[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("--methods: unknown method %q (%s)", n, adaptrun.MethodNames)
		}
		if m, err = withGateDrop(m, o.gateDrop); err != nil {
			return nil, err
		}
		if len(sizes) == 1 && m.Kind == adaptrun.KindHyper {
			m.ClusterSize = sizes[0]
		}
		if len(decays) == 1 && m.Basis {
			m.GateDecay = decays[0]
		}
		bases = bases || m.Basis
		out = append(out, m)
	}
	if len(decays) > 0 && !bases {
		return nil, fmt.Errorf("--gate-decays %q: no gated basis among --methods %q to decay", o.gateDecays, o.methods)
	}
	return out, nil
}

// withGateDrop gives a method with gate dropout the rate --gate-drop
// asks for (0: its own), refusing a rate outside [0, 1).
func withGateDrop(m adaptrun.Method, p float64) (adaptrun.Method, error) {
	if !(p >= 0 && p < 1) {
		return m, fmt.Errorf("--gate-drop %g: want 0 <= p < 1", p)
	}
	if p == 0 || m.GateDrop == 0 {
		return m, nil
	}
	return m.WithGateDrop(p), nil
}

// gateDropUsage is --gate-drop's help, the same for adapt bench and adapt train.
const gateDropUsage = "gate dropout of hyper-basis-drop: the chance that a cluster of a training step gets zero gates (0: the method's own, 0.5)"

// budgetUsage is --budget's help, the same for adapt bench and adapt train.
const budgetUsage = "parameter budget of lora-matched and the gated bases (hyper-basis, hyper-basis-fit, hyper-basis-drop), in ranks of a LoRA of the output projection (0: the head-only hyper-network's parameters at --rank)"

// barProgress reports adaptrun.Run's training steps on bar and, when
// stderr is not a terminal, as plain lines.
func barProgress(bar *progressbar.ProgressBar, plain func(step, steps int, desc string)) func(what string, step, steps int, loss float64) {
	return func(what string, step, steps int, loss float64) {
		bar.ChangeMax(steps)
		bar.Describe(fmt.Sprintf("%s loss %.3f", what, loss))
		_ = bar.Set(step)
		plain(step, steps, fmt.Sprintf("%s loss %.3f", what, loss))
	}
}

// saveFirstAdapters writes the first seed's adapter of every hyper method,
// and of every LoRA trained with features (the gated control),
// (OUT/<method key>.safetensors) with its gate and self-check, as adapt
// train writes them: files adapt score and adapt cache can serve.
func saveFirstAdapters(firsts map[string]*adaptrun.Trained, known map[string]adaptrun.Method, sets adaptrun.Sets, batch int, out string) error {
	for name, tr := range firsts {
		if tr.Adapter == nil {
			continue
		}
		for key, m := range known {
			if m.Name != name {
				continue
			}
			ok, err := adaptrun.GateAndSelfCheck(tr, sets.Train, sets.Fit, batch)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := adapt.Save(filepath.Join(out, key+".safetensors"), tr.Adapter); err != nil {
				return err
			}
		}
	}
	return nil
}

// benchRoles maps each domain the benchmark uses to its role: from the
// flags, or the corpus's roles.
func benchRoles(c *data.Corpus, adaptDoms, heldDoms, pretrainDoms string) (map[string]string, error) {
	roles := map[string]string{}
	set := func(list, role string) {
		for _, d := range strings.Split(list, ",") {
			if d = strings.TrimSpace(d); d != "" {
				roles[d] = role
			}
		}
	}
	set(pretrainDoms, adaptrun.RolePretrain)
	set(heldDoms, adaptrun.RoleHeldOut)
	set(adaptDoms, adaptrun.RoleAdapt)
	if adaptDoms == "" {
		for _, d := range c.Domains() {
			if r := corpusRole(c, d); r != "" {
				if _, ok := roles[d]; !ok {
					roles[d] = r
				}
			}
		}
	}
	n := 0
	for _, r := range roles {
		if r == adaptrun.RoleAdapt {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no adaptation domains: the corpus at %s has no domain of role %q (rebuild it with `make data`) and --adapt-domains is empty", c.Dir(), adaptrun.RoleAdapt)
	}
	return roles, nil
}

// benchFromJSON redraws the report from earlier results: the first file's
// rows, then every later file's trained rows (same windows and seeds).
func benchFromJSON(files, out, primary string, rank, budget int, features string) error {
	var res *adaptrun.Result
	for i, f := range strings.Split(files, ",") {
		r, err := adaptrun.ReadJSON(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		if i == 0 {
			res = r
			continue
		}
		if r.T != res.T || r.Prompt != res.Prompt || len(r.TestDom) != len(res.TestDom) {
			return fmt.Errorf("%s was measured on other windows than the first file", f)
		}
		for _, row := range r.Rows {
			if row.Method != "" {
				res.Rows = append(res.Rows, row)
				res.Methods = append(res.Methods, adaptrun.Method{Name: row.Method})
			}
		}
		res.Seconds += r.Seconds
	}
	res.Primary = adaptrun.PrimaryAuto
	if m, ok := adaptrun.Methods(rank, features, len(res.TestDomains), max(1, budget))[primary]; ok {
		res.Primary = m.Name
	}
	if out == "" {
		return fmt.Errorf("--out is required")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return writeBenchReport(res, out)
}

// writeBenchReport writes bench.md, bench.json and bench.png into out.
func writeBenchReport(res *adaptrun.Result, out string) error {
	sum := res.Summarise()
	md := res.Markdown(sum)
	if err := os.WriteFile(filepath.Join(out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := res.WriteJSON(filepath.Join(out, "bench.json"), sum); err != nil {
		return err
	}
	if err := res.WritePNG(filepath.Join(out, "bench.png"), sum); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

// corpusRole is a domain's role in the corpus's manifest ("" when the
// manifest does not say).
func corpusRole(c *data.Corpus, d string) string {
	switch c.Role(d) {
	case data.RoleAdapt:
		return adaptrun.RoleAdapt
	case data.RoleHeldout:
		return adaptrun.RoleHeldOut
	case data.RolePretrain:
		return adaptrun.RolePretrain
	}
	return ""
}
