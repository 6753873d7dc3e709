package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/train"
)

// benchMethods are the methods `adapt bench` knows by name; rank r,
// features f and the primary hyper-network's parameter count p (for the
// parameter-matched LoRA) fill them in.
func benchMethods(r int, f string, nAdapt int, matchedRank int) map[string]adaptrun.Method {
	return map[string]adaptrun.Method{
		// Features give a LoRA the gate's centroids: its gated rows are the
		// control for the hyper-network's gated online rows.
		"lora":         {Name: fmt.Sprintf("LoRA r=%d", r), Kind: adaptrun.KindLoRA, Rank: r, Features: f},
		"lora-matched": {Name: fmt.Sprintf("LoRA r=%d (parameter-matched)", matchedRank), Kind: adaptrun.KindLoRA, Rank: matchedRank, Features: f},
		"experts":      {Name: fmt.Sprintf("domain experts r=%d", r), Kind: adaptrun.KindExperts, Rank: r, Features: f},
		"table":        {Name: fmt.Sprintf("per-cluster LoRA table, k=%d, r=%d", nAdapt, r), Kind: adaptrun.KindTable, Rank: r, Features: f, K: nAdapt},
		"hyper-paper": {Name: "ChamaleonLLM (paper: embeddings, dropout 0.5)", Kind: adaptrun.KindHyper, Rank: r, Features: adapt.FeatureEmbed,
			Hidden: []int{64, 32}, Dropout: 0.5},
		"hyper-embed": {Name: "ChamaleonLLM+ (embeddings)", Kind: adaptrun.KindHyper, Rank: r, Features: adapt.FeatureEmbed,
			Hidden: []int{64, 32}, Recluster: true},
		"hyper-hidden": {Name: "ChamaleonLLM+ (hidden states)", Kind: adaptrun.KindHyper, Rank: r, Features: adapt.FeatureHidden,
			Hidden: []int{64, 32}, Recluster: true},
		"hyper-both": {Name: "ChamaleonLLM+ (embeddings + hidden states)", Kind: adaptrun.KindHyper, Rank: r, Features: adapt.FeatureBoth,
			Hidden: []int{64, 32}, Recluster: true},
		// A static pair of rank 128 for the shift every adaptation domain
		// shares plus the generated per-cluster update, trained jointly;
		// the narrower second hidden layer keeps the total at the
		// parameter-matched LoRA's (C=256, V=4096, r=8: 557,056 + 609,360 =
		// 1,166,416 against hyper-hidden's 1,167,456).
		"hyper-hybrid": {Name: "ChamaleonLLM+ hybrid (static r=128 + generated, hidden states)", Kind: adaptrun.KindHyper, Rank: r,
			Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true, StaticRank: 128},
		// Nearly all of the budget in the static pair (rank 232 of the
		// output projection's 256) and a generated rank-2 update per cluster
		// on top: 1,009,664 + 165,456 = 1,175,120 parameters (C=256, V=4096)
		// against the matched LoRA's 1,183,744. If per-cluster
		// specialisation pays at all on top of a near-full-rank shared
		// update, this is where it shows against the matched LoRA.
		"hyper-hybrid-full": {Name: "ChamaleonLLM+ hybrid (static r=232 + generated r=2, hidden states)", Kind: adaptrun.KindHyper, Rank: 2,
			Features: adapt.FeatureHidden, Hidden: []int{64, 16}, Recluster: true, StaticRank: 232},
		// Updates inside the decoder (the frozen base runs forward and
		// backward every step).
		"lora-qkv": {Name: fmt.Sprintf("LoRA r=%d in qkv + head", r), Kind: adaptrun.KindLoRA, Rank: r, Features: f, Deep: []string{train.SiteQKV}},
		"hyper-v3": {Name: "ChamaleonLLM v3 (static LoRA in qkv, generated head)", Kind: adaptrun.KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV}, DeepStatic: true},
		"hyper-qkv": {Name: "ChamaleonLLM+ generated in qkv + head", Kind: adaptrun.KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV}},
		"hyper-all": {Name: "ChamaleonLLM+ generated in qkv, proj, fc, fc2 + head", Kind: adaptrun.KindHyper, Rank: r, Features: f,
			Hidden: []int{64, 32}, Recluster: true, Deep: []string{train.SiteQKV, train.SiteProj, train.SiteFC, train.SiteFC2}},
	}
}

var benchMethodNames = "lora, lora-matched, experts, table, hyper-paper, hyper-embed, hyper-hidden, hyper-both, hyper-hybrid, hyper-hybrid-full, lora-qkv, hyper-v3, hyper-qkv, hyper-all"

func adaptBenchCmd() *cobra.Command {
	var mf modelFlags
	var corpus, windowsIn, saveWindows, out, methods, primary, lrs, adaptDoms, heldDoms, pretrainDoms, features string
	var t, prompt, rank, seeds, epochs, batch, bootstrap int
	var sz adaptrun.Sizes
	var alpha float32
	var seed uint64
	var prepareOnly bool
	var fromJSON string
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
hyper-network of every ChamaleonLLM method (OUT/<method>.safetensors).
--save-windows writes the windows (token ids) so that a machine without the
corpus can run the benchmark with --windows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if fromJSON != "" {
				return benchFromJSON(fromJSON, out, primary, rank, features)
			}
			var w *adaptrun.Windows
			s, tb, base, err := mf.loadForAdapters("train adapters")
			if err != nil {
				return err
			}
			defer s.close()
			if windowsIn != "" {
				if w, err = adaptrun.LoadWindows(windowsIn); err != nil {
					return err
				}
			} else {
				cp, err := data.Open(corpus)
				if err != nil {
					return err
				}
				roles, err := benchRoles(cp, adaptDoms, heldDoms, pretrainDoms)
				if err != nil {
					return err
				}
				if w, err = adaptrun.BuildWindows(cp, s.tok, roles, t, prompt, sz, seed); err != nil {
					return err
				}
			}
			if saveWindows != "" {
				if err := w.Save(saveWindows); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "windows written to %s\n", saveWindows)
				if prepareOnly {
					return nil
				}
			}
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			for _, split := range []string{"train", "validation", "test"} {
				if len(w.Splits[split]) == 0 {
					return fmt.Errorf("the windows have no %s split", split)
				}
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
			var lrList []float64
			for _, f := range strings.Split(lrs, ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil || !(v > 0) {
					return fmt.Errorf("--lrs %q: want positive numbers, comma-separated", lrs)
				}
				lrList = append(lrList, v)
			}
			cfgC, cfgV := s.m.Cfg.NEmbd, s.m.Cfg.VocabSize
			nAdapt := len(sets.Train.Domains)
			known := benchMethods(rank, features, nAdapt, 1)
			pm, ok := known[primary]
			if primary == adaptrun.PrimaryAuto {
				pm, ok = known["hyper-both"], true // the parameter-matched LoRA matches the head-only hyper-network
			}
			if !ok || pm.Kind != adaptrun.KindHyper {
				return fmt.Errorf("--primary %q: want auto or one of the hyper methods (%s)", primary, benchMethodNames)
			}
			matched := max(1, int(math.Round(float64(pm.Params(cfgC, cfgV, 1))/float64(cfgC+cfgV))))
			known = benchMethods(rank, features, nAdapt, matched)
			var ms []adaptrun.Method
			for _, n := range strings.Split(methods, ",") {
				m, ok := known[strings.TrimSpace(n)]
				if !ok {
					return fmt.Errorf("--methods: unknown method %q (%s)", n, benchMethodNames)
				}
				ms = append(ms, m)
			}
			bar := newBar("training", "steps")
			plain := logProgress(os.Stderr, 30*time.Second)
			label := s.label
			primaryName := adaptrun.PrimaryAuto
			if primary != adaptrun.PrimaryAuto {
				primaryName = known[primary].Name
			}
			cfg := adaptrun.Config{Methods: ms, LRs: lrList, Seeds: seeds, Primary: primaryName, Bootstrap: bootstrap,
				Opts: adaptrun.TrainOpts{Batch: batch, Epochs: epochs, Alpha: alpha}, Log: os.Stderr,
				Progress: func(what string, step, steps int, loss float64) {
					bar.ChangeMax(steps)
					bar.Describe(fmt.Sprintf("%s loss %.3f", what, loss))
					_ = bar.Set(step)
					plain(step, steps, fmt.Sprintf("%s loss %.3f", what, loss))
				},
				Checkpoint: func(r *adaptrun.Result) {
					r.Model = label
					if err := r.WriteJSON(filepath.Join(out, "bench-partial.json"), r.Summarise()); err != nil {
						fmt.Fprintf(os.Stderr, "checkpoint: %v\n", err)
					}
				}}
			e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Wte, Base: base, Batch: batch, Seed: 1}
			for _, m := range ms {
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
			res.Model = label
			for name, tr := range firsts {
				if tr.M.Kind != adaptrun.KindHyper || tr.Adapter == nil {
					continue
				}
				for key, m := range known {
					if m.Name != name {
						continue
					}
					g, err := adaptrun.GateFor(tr.Adapter, sets.Train, sets.Fit, batch)
					if err != nil {
						return err
					}
					if err := tr.Adapter.SetGate(g); err != nil {
						return err
					}
					tr.Adapter.Meta.SelfCheck = true // as adapt train writes it
					if err := adapt.Save(filepath.Join(out, key+".safetensors"), tr.Adapter); err != nil {
						return err
					}
				}
			}
			return writeBenchReport(res, out)
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	fl.StringVar(&windowsIn, "windows", "", "read the windows from this file (written by --save-windows) instead of the corpus")
	fl.StringVar(&saveWindows, "save-windows", "", "write the windows to this file")
	fl.BoolVar(&prepareOnly, "prepare-only", false, "with --save-windows: stop after writing the windows")
	fl.StringVar(&out, "out", "", "output dir")
	fl.StringVar(&adaptDoms, "adapt-domains", "", "adaptation domains, comma-separated (default: the corpus's adapt role)")
	fl.StringVar(&heldDoms, "heldout-domains", "", "held-out domains (default: the corpus's heldout role)")
	fl.StringVar(&pretrainDoms, "pretrain-domains", "", "pretraining domains scored for harm (default: the corpus's pretrain role)")
	fl.IntVar(&t, "t", 192, "tokens a window")
	fl.IntVar(&prompt, "prompt", 64, "prompt tokens a window: features come from them, the rest is scored")
	fl.IntVar(&sz.Train, "train", 300, "training windows per adaptation domain")
	fl.IntVar(&sz.Validation, "val", 60, "validation windows per adaptation domain")
	fl.IntVar(&sz.Test, "test", 150, "test windows per adaptation domain")
	fl.IntVar(&sz.Harm, "harm", 60, "test windows per pretraining and held-out domain")
	fl.IntVar(&sz.Fit, "fit", 100, "training windows per pretraining domain: the gate's picture of the inputs the base model already serves (0: no such gate)")
	fl.Uint64Var(&seed, "seed", 1, "seed of window sampling")
	fl.StringVar(&methods, "methods", "lora,experts,table,hyper-both,hyper-hidden,hyper-embed,hyper-paper,lora-matched", "methods, comma-separated, in the order they run")
	fl.StringVar(&primary, "primary", adaptrun.PrimaryAuto, "the ChamaleonLLM method tested against the baselines (its online row); auto: the one best on validation")
	fl.StringVar(&features, "features", adapt.FeatureBoth, "features the experts route by and the table clusters on (embed, hidden, embed+hidden)")
	fl.StringVar(&lrs, "lrs", "3e-4,1e-3,3e-3,1e-2,3e-2", "learning-rate grid")
	fl.IntVar(&seeds, "seeds", 3, "training seeds")
	fl.IntVar(&epochs, "epochs", 2, "passes over the training windows")
	fl.IntVar(&batch, "batch", adapt.DefaultBatchSize, "windows a batch (the cluster batch size)")
	fl.IntVar(&rank, "rank", 8, "rank of every low-rank update")
	fl.Float32Var(&alpha, "alpha", 1, "scale of the update")
	fl.IntVar(&bootstrap, "bootstrap", 1000, "paired bootstrap resamples")
	fl.StringVar(&fromJSON, "from-json", "", "redraw the report from bench.json files (comma-separated: the rows of later files are added to the first's, base and temperature rows skipped) into --out, with --primary")
	return c
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
func benchFromJSON(files, out, primary string, rank int, features string) error {
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
	if m, ok := benchMethods(rank, features, len(res.TestDomains), 1)[primary]; ok {
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

// adaptGateCurveCmd replays other gates on a benchmark result.
func adaptGateCurveCmd() *cobra.Command {
	var mf modelFlags
	var windowsIn, fromJSON, adapterSpec, method, out, qs string
	var asJSON bool
	c := &cobra.Command{
		Use:   "gatecurve --windows W --from-json bench.json --out DIR",
		Short: "What the gate trades: replay gates of other radii on a benchmark result (gain kept against harm done)",
		Long: `Replays gates of other radii (quantiles of the training windows' distances to
the adapter's training centroids), with and without the pretraining half, on the
first seed of a ChamaleonLLM method in a benchmark result: each window scores the
method's ungated online loss where the gate opens and the base model's where it
closes, which is what the online grouping scores under that gate. It also
replays a self-check: keep the update only where it lowers the loss of the
window's own prompt (alone, and with the shipped gate). The adapter
must be that method's first-seed file (its centroids); the windows file the
result was measured on. Writes DIR/gate-curve.md and DIR/gate-curve.png.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if windowsIn == "" || fromJSON == "" || out == "" {
				return fmt.Errorf("--windows, --from-json and --out are required")
			}
			var qList []float64
			for _, f := range strings.Split(qs, ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil || !(v > 0 && v <= 1) {
					return fmt.Errorf("--quantiles %q: want numbers in (0, 1]", qs)
				}
				qList = append(qList, v)
			}
			res, err := adaptrun.ReadJSON(fromJSON)
			if err != nil {
				return err
			}
			res.Primary = adaptrun.PrimaryAuto
			if method == "" {
				method = res.PrimaryMethod()
			}
			w, err := adaptrun.LoadWindows(windowsIn)
			if err != nil {
				return err
			}
			s, tb, base, err := mf.loadForAdapters("score the prompts")
			if err != nil {
				return err
			}
			defer s.close()
			a, err := loadAdapter(adapterSpec, s.m)
			if err != nil {
				return err
			}
			sets, err := prepareWithBar(s, w.PromptsOnly())
			if err != nil {
				return err
			}
			e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Wte, Base: base, Batch: adapt.DefaultBatchSize, Seed: 1}
			pts, err := adaptrun.GateCurve(res, method, a, sets, adapt.DefaultBatchSize, qList, e)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			md := adaptrun.GateCurveMarkdown(method, pts)
			if err := os.WriteFile(filepath.Join(out, "gate-curve.md"), []byte(md), 0o644); err != nil {
				return err
			}
			if err := adaptrun.WriteGateCurvePNG(filepath.Join(out, "gate-curve.png"), pts); err != nil {
				return err
			}
			if asJSON {
				return printJSON(os.Stdout, map[string]any{"method": method, "points": pts})
			}
			fmt.Print(md)
			return nil
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.BoolVar(&asJSON, "json", false, "print the replayed points as JSON (the files are written either way)")
	fl.StringVar(&windowsIn, "windows", "", "the windows file the result was measured on")
	fl.StringVar(&fromJSON, "from-json", "", "the benchmark result (bench.json, or .json.gz)")
	fl.StringVar(&adapterSpec, "adapter", "default", "the method's first-seed adapter file")
	fl.StringVar(&method, "method", "", "the method's name in the result (default: its tested method)")
	fl.StringVar(&out, "out", "", "output dir")
	fl.StringVar(&qs, "quantiles", "0.5,0.7,0.8,0.9,0.95,0.99,1", "radius quantiles to replay")
	return c
}
