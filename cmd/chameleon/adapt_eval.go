package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/train"
)

// evalRow is one method's result in adapt eval.
type evalRow struct {
	Method     string             `json:"method"`
	Adapter    string             `json:"adapter,omitempty"` // file
	Params     int                `json:"trainable_params"`
	Bytes      int64              `json:"bytes_stored"`
	Perplexity map[string]float64 `json:"perplexity"` // per domain and "all"
	Loss       map[string]float64 `json:"loss"`       // nats/token
	Tokens     int                `json:"tokens"`
}

type evalReport struct {
	Model   string    `json:"model"`
	Split   string    `json:"split"`
	Windows int       `json:"windows"`
	Seq     int       `json:"window_tokens"`
	Batch   int       `json:"batch"`
	Domains []string  `json:"domains"`
	Rows    []evalRow `json:"rows"`
}

func adaptEvalCmd() *cobra.Command {
	var mf modelFlags
	var df adaptDataFlags
	var dir, split, md, png, replot string
	var asJSON bool
	c := &cobra.Command{
		Use:   "eval --adapters DIR",
		Short: "Per-domain test perplexity of the base model and every adapter in DIR, with parameters and bytes stored",
		Long: `Score the corpus's test windows (--per-domain per domain) with the base
model and with each adapter found in --adapters (as written by adapt train:
lora, lora-matched, experts, hyper .safetensors), reporting per-domain and
overall perplexity, trainable parameters and bytes stored. The hyper-network
is scored three ways: on the test windows clustered by k-means into batches
of one cluster each (the paper's setting), on windows assigned online to the
training centroids, and on randomly formed (mixed-domain) batches, which
shows what the clustering itself buys. The experts row uses the domain labels
(an oracle).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if replot != "" { // tables and plot from a saved --json report
				b, err := os.ReadFile(replot)
				if err != nil {
					return err
				}
				var rep evalReport
				if err := json.Unmarshal(b, &rep); err != nil {
					return fmt.Errorf("--replot %s: %w", replot, err)
				}
				return emitEval(rep, asJSON, md, png)
			}
			if dir == "" {
				return fmt.Errorf("--adapters is required")
			}
			s, tb, base, err := mf.loadForAdapters("run the evaluation")
			if err != nil {
				return err
			}
			defer s.close()
			d, err := df.load(s, split)
			if err != nil {
				return err
			}
			rep := evalReport{Model: mf.path, Split: split, Windows: len(d.Windows), Seq: df.seq, Batch: df.batch, Domains: d.Domains}
			if rep.Model == "" {
				rep.Model = "default"
			}
			add := func(method, file string, a *adapt.Adapter, l train.DomainLoss) {
				r := evalRow{Method: method, Adapter: file, Perplexity: map[string]float64{}, Loss: map[string]float64{}}
				if a != nil {
					r.Params = paramCount(a)
					if st, err := os.Stat(file); err == nil {
						r.Bytes = st.Size()
					}
				}
				ms := l.Mean()
				for i, dom := range l.Domain {
					r.Loss[dom], r.Perplexity[dom] = ms[i], math.Exp(ms[i])
					r.Tokens += l.Count[i]
				}
				r.Loss["all"], r.Perplexity["all"] = ms[len(ms)-1], math.Exp(ms[len(ms)-1])
				rep.Rows = append(rep.Rows, r)
				fmt.Fprintf(os.Stderr, "%-22s perplexity %.2f\n", method, r.Perplexity["all"])
			}
			score := func(a *adapt.Adapter, groups []train.Group, asBase bool) (train.DomainLoss, error) {
				n, err := train.NewAdapterNet(tb, s.m.W.Wte, a.Meta, trainable(a))
				if err != nil {
					return train.DomainLoss{}, err
				}
				defer n.Free()
				bar := newBar("scoring", "batches")
				bar.ChangeMax(len(groups))
				defer bar.Finish()
				return train.EvalGroups(n, d, groups, asBase, func(i int) { _ = bar.Set(i) })
			}
			var loaded []struct {
				name, file string
				a          *adapt.Adapter
			}
			for _, name := range []string{"lora", "lora-matched", "experts", "hyper"} {
				file := filepath.Join(dir, name+".safetensors")
				if _, err := os.Stat(file); err != nil {
					continue
				}
				a, err := adapt.Load(file, base)
				if err != nil {
					return err
				}
				loaded = append(loaded, struct {
					name, file string
					a          *adapt.Adapter
				}{name, file, a})
			}
			if len(loaded) == 0 {
				return fmt.Errorf("no adapters (lora, lora-matched, experts, hyper .safetensors) in %s", dir)
			}
			// The base model: any adapter with its update switched off.
			bl, err := score(loaded[0].a, d.RandomGroups(df.batch, df.seed), true)
			if err != nil {
				return err
			}
			add("base model", "", nil, bl)
			for _, x := range loaded {
				switch x.a.Meta.Kind {
				case adapt.KindLoRA:
					l, err := score(x.a, d.RandomGroups(df.batch, df.seed), false)
					if err != nil {
						return err
					}
					label := fmt.Sprintf("LoRA r=%d", x.a.Meta.Rank)
					if x.name == "lora-matched" {
						label = fmt.Sprintf("LoRA r=%d (param-matched)", x.a.Meta.Rank)
					}
					add(label, x.file, x.a, l)
				case adapt.KindExperts:
					l, err := score(x.a, d.DomainGroups(df.batch), false)
					if err != nil {
						return err
					}
					add(fmt.Sprintf("%d domain experts r=%d (oracle)", x.a.Meta.Experts, x.a.Meta.Rank), x.file, x.a, l)
				case adapt.KindHyper:
					gs, _, err := d.ClusteredGroups(tb, df.batch, df.seed)
					if err != nil {
						return err
					}
					l, err := score(x.a, gs, false)
					if err != nil {
						return err
					}
					add("ChamaleonLLM, clustered batches", x.file, x.a, l)
					if cents := x.a.TrainingCentroids(); cents != nil {
						gs, err := d.OnlineGroups(tb, cents, df.batch)
						if err != nil {
							return err
						}
						l, err := score(x.a, gs, false)
						if err != nil {
							return err
						}
						add("ChamaleonLLM, online (training centroids)", x.file, x.a, l)
					}
					l, err = score(x.a, d.RandomGroups(df.batch, df.seed), false)
					if err != nil {
						return err
					}
					add("ChamaleonLLM, random batches", x.file, x.a, l)
				}
			}
			return emitEval(rep, asJSON, md, png)
		},
	}
	mf.add(c)
	df.add(c, 100)
	f := c.Flags()
	f.StringVar(&dir, "adapters", "", "dir of adapters written by adapt train")
	f.StringVar(&split, "split", "test", "corpus split to score")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of Markdown")
	f.StringVar(&md, "md", "", "also write the Markdown table to this file")
	f.StringVar(&png, "png", "", "also draw each method's per-domain perplexity change against the base model as a PNG")
	f.StringVar(&replot, "replot", "", "print the tables (and --md, --png) of a report saved with --json instead of scoring")
	return c
}

func writeEvalMarkdown(w io.Writer, rep evalReport) {
	fmt.Fprintf(w, "%s split, %d windows of %d tokens (%d per domain), batches of %d; perplexity (lower is better)\n\n",
		rep.Split, rep.Windows, rep.Seq, rep.Windows/max(len(rep.Domains), 1), rep.Batch)
	fmt.Fprintf(w, "| method | trainable params | bytes stored | %s | all |\n|---|---|---|%s---|\n",
		strings.Join(rep.Domains, " | "), strings.Repeat("---|", len(rep.Domains)))
	for _, r := range rep.Rows {
		fmt.Fprintf(w, "| %s | %d | %d |", r.Method, r.Params, r.Bytes)
		for _, d := range rep.Domains {
			fmt.Fprintf(w, " %.2f |", r.Perplexity[d])
		}
		fmt.Fprintf(w, " **%.2f** |\n", r.Perplexity["all"])
	}
}

// writeEvalPlot draws, for each domain and overall, one bar per adapted
// method: its perplexity change against the base model, in percent
// (negative is better), since the methods differ by far less than the
// domains do.
func writeEvalPlot(path string, rep evalReport) error {
	if len(rep.Rows) < 2 {
		return fmt.Errorf("adapt eval: nothing to plot beside the base model")
	}
	p := plot.New()
	p.Title.Text = "test perplexity change against the base model (lower is better)"
	p.Y.Label.Text = "perplexity change (%)"
	cats := append(append([]string(nil), rep.Domains...), "all")
	base := rep.Rows[0]
	rows := rep.Rows[1:]
	width := vg.Points(60 / float64(len(rows)))
	for i, r := range rows {
		vals := make(plotter.Values, len(cats))
		for j, c := range cats {
			vals[j] = 100 * (r.Perplexity[c]/base.Perplexity[c] - 1)
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = width * vg.Length(float64(i)-float64(len(rows)-1)/2)
		p.Add(bars)
		p.Legend.Add(r.Method, bars)
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = true
	p.NominalX(cats...)
	return p.Save(11*vg.Inch, 5.5*vg.Inch, path)
}

// emitEval prints a report (JSON or Markdown) and writes the --md and
// --png files.
func emitEval(rep evalReport, asJSON bool, md, png string) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeEvalMarkdown(os.Stdout, rep)
	}
	if md != "" {
		f, err := os.Create(md)
		if err != nil {
			return err
		}
		writeEvalMarkdown(f, rep)
		if err := f.Close(); err != nil {
			return err
		}
	}
	if png != "" {
		return writeEvalPlot(png, rep)
	}
	return nil
}
