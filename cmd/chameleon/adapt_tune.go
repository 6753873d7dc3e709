package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

// adaptTuneCmd scores a gated basis with its gates tuned at test time on
// each batch's prompts (adaptrun.TuneEval).
//
// (Over 80 lines: its flag declarations and the report around one call to
// adaptrun.TuneEval.)
func adaptTuneCmd() *cobra.Command {
	var mf modelFlags
	var adapterSpec, windowsIn, lrs, versus, versusRow, out string
	var steps, iters int
	c := &cobra.Command{
		Use:   "tune --adapter FILE --windows FILE --out DIR",
		Short: "Score a gated basis with its gates tuned at test time on each batch's prompts (rate chosen on validation)",
		Long: `A gated basis (adapt train --method hyper-basis) generates each cluster's
gates from its centroid. Here each batch of windows (online assignment, the
file's gate, the self-check) then takes --steps Adam steps on its gates alone
against the loss of its own prompts, which a server has prefilled anyway,
before the rest of each window is scored. The rate comes from --lrs by the
validation split; test and harm are scored with it, against the untuned
gates, with a paired bootstrap interval; --versus compares the tuned test
losses with a row of another adapter's adapt cache result (default: the
adapter alone) over the same windows. A gated LoRA file is tuned as a
zero-gate basis (its components gated, every gate starting at zero): the
control for what the hyper-network's gates add to the tuning. Writes
DIR/tune.md and DIR/tune.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if windowsIn == "" || out == "" {
				return fmt.Errorf("--windows and --out are required")
			}
			rates, err := parseRates(lrs)
			if err != nil {
				return err
			}
			var other *adaptrun.CacheResult
			if versus != "" {
				if other, err = adaptrun.LoadCacheResult(versus); err != nil {
					return fmt.Errorf("--versus: %w", err)
				}
			}
			w, err := adaptrun.LoadWindows(windowsIn)
			if err != nil {
				return err
			}
			w.Keep("validation", "test", "harm")
			s, tb, base, err := mf.loadForAdapters("tune the gates")
			if err != nil {
				return err
			}
			defer s.close()
			a, err := loadAdapter(adapterSpec, s.m)
			if err != nil {
				return err
			}
			if a.Meta.Kind == adapt.KindLoRA {
				// The control: the LoRA's own components gated, from zero.
				if a, err = adaptrun.ZeroGateBasis(a); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "a LoRA of rank %d: tuning gates on its components from zero (a zero-gate basis)\n", a.Meta.Rank)
			}
			sets, err := prepareWithBar(s, w)
			if err != nil {
				return err
			}
			e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Head(), Base: base, Batch: adapt.DefaultBatchSize, Seed: 1}
			res, err := adaptrun.TuneEval(e, a, sets, steps, rates, iters, func(what string) { fmt.Fprintln(os.Stderr, "scoring", what) })
			if err != nil {
				return err
			}
			if other != nil {
				if err := res.Versus(other, versus, versusRow, iters); err != nil {
					return err
				}
			}
			return writeReport(out, "tune", res.Markdown, res)
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&adapterSpec, "adapter", "", "the gated basis's file")
	fl.StringVar(&windowsIn, "windows", "", "the benchmark's windows (adapt bench --save-windows)")
	fl.StringVar(&lrs, "lrs", "0.01,0.03,0.1", "tuning rates to choose from on validation")
	fl.IntVar(&steps, "steps", 5, "Adam steps on each batch's gates")
	fl.IntVar(&iters, "bootstrap", 1000, "paired bootstrap resamples")
	fl.StringVar(&versus, "versus", "", "another adapter's adapt cache result (cache.json.gz) over the same windows")
	fl.StringVar(&versusRow, "versus-row", "adapter (served plan, no cache)", "the row of --versus's test stream to compare with")
	fl.StringVar(&out, "out", "", "output dir")
	return c
}
