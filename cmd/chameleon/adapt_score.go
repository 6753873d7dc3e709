package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

// adaptScoreCmd scores a saved adapter on the benchmark's windows through
// the inference path (adaptrun.ScoreServed).
//
// (Over 80 lines: its flag declarations and the printing of the report around
// one call to adaptrun.ScoreServed.)
func adaptScoreCmd() *cobra.Command {
	var mf modelFlags
	var adapterSpec, windowsIn, splits, versus string
	var batch, iters, checkTokens int
	var asJSON, fullCheck bool
	var tune adapt.Tune
	c := &cobra.Command{
		Use:   "score --adapter FILE --windows FILE",
		Short: "Score a saved adapter on the benchmark's windows the way generate and serve run it (online assignment, gate, self-check, updates inside the decoder)",
		Long: `Loads the adapter file as generate, run and serve do, plans each batch of
windows from its prompt alone and scores the rest of each window with and
without the plan's updates: perplexity per domain and per role, the share
of windows the gate and self-check let through, and a paired bootstrap
interval of the difference. --windows is a file of adapt bench --save-windows;
its test split holds the adaptation domains, harm the pretraining and
held-out ones. With --versus, a second adapter file (e.g. the same weights
with another gate or selection) is scored on the same windows and its rows
minus --adapter's are printed, paired window by window: how to choose
between two serving settings on the validation splits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if windowsIn == "" {
				return fmt.Errorf("--windows: the windows file to score (adapt bench --save-windows)")
			}
			w, s, a, err := mf.loadWindowsAdapter(windowsIn, adapterSpec)
			if err != nil {
				return err
			}
			defer s.close()
			var b *adapt.Adapter
			if versus != "" {
				if b, err = loadAdapter(versus, s.m); err != nil {
					return fmt.Errorf("--versus: %w", err)
				}
			}
			var all, vs []adaptrun.ServedRow
			var svs []*adaptrun.Served
			for _, split := range strings.Split(splits, ",") {
				sv, err := scoreServedWithBar(s, a, w, split, adaptrun.ServedOpts{Batch: batch, Tune: tune, CheckTokens: checkTokens, FullCheck: fullCheck})
				if err != nil {
					return fmt.Errorf("--splits: %w", err)
				}
				svs = append(svs, sv)
				rows := sv.Rows(w.Order, w.Roles, iters)
				all = append(all, rows...)
				if !asJSON {
					fmt.Printf("\n%s split, %d windows:\n\n", split, len(sv.Domains))
					adaptrun.WriteServedMarkdown(os.Stdout, rows)
				}
				if b != nil {
					v, err := scoreVersus(s, b, w, sv, adaptrun.ServedOpts{Batch: batch, Tune: tune, CheckTokens: checkTokens, FullCheck: fullCheck}, iters)
					if err != nil {
						return fmt.Errorf("--versus: %w", err)
					}
					vs = append(vs, v...)
					printVersus(asJSON, split, adapterSpec, versus, v)
				}
			}
			if len(svs) > 1 {
				mixed := adaptrun.MixedRow(iters, svs...)
				all = append(all, mixed)
				if !asJSON {
					fmt.Printf("\nevery split in one stream (%s):\n\n", splits)
					adaptrun.WriteServedMarkdown(os.Stdout, []adaptrun.ServedRow{mixed})
				}
			}
			if asJSON {
				out := map[string]any{"adapter": describeAdapter(a.Meta), "rows": all}
				if b != nil {
					out["versus"], out["versus_rows"] = describeAdapter(b.Meta), vs
				}
				return printJSON(os.Stdout, out)
			}
			return nil
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&adapterSpec, "adapter", "default", "adapter file, or default (the embedded hyper-network)")
	fl.StringVar(&windowsIn, "windows", "", "windows file (adapt bench --save-windows)")
	fl.StringVar(&splits, "splits", "test,harm", "splits to score, comma-separated")
	fl.StringVar(&versus, "versus", "", "a second adapter file scored on the same windows: its rows minus --adapter's, paired")
	fl.IntVar(&batch, "batch", 16, "windows a batch (a plan)")
	fl.IntVar(&checkTokens, "check-tokens", 0, "the self-check scores at most this many of a prompt's last predictions (0: the runtime's default, 64; -1: all)")
	fl.BoolVar(&fullCheck, "full-check", false, "score a staged self-check (adapt stage) in one stage, as before staging")
	fl.IntVar(&iters, "bootstrap", 1000, "bootstrap resamples of each interval")
	fl.BoolVar(&asJSON, "json", false, "print the rows as JSON")
	addTuneFlags(c, &tune)
	return c
}

// scoreVersus scores adapter b on sv's windows and pairs it with sv (the
// --adapter's scores): b minus a per domain and role (adaptrun.Versus).
func scoreVersus(s *session, b *adapt.Adapter, w *adaptrun.Windows, sv *adaptrun.Served, o adaptrun.ServedOpts, iters int) ([]adaptrun.ServedRow, error) {
	svb, err := scoreServedWithBar(s, b, w, sv.Split, o)
	if err != nil {
		return nil, err
	}
	v, err := adaptrun.Versus(sv, svb)
	if err != nil {
		return nil, err
	}
	rows := v.Rows(w.Order, w.Roles, iters)
	for i := range rows {
		rows[i].Name = sv.Split + ": " + rows[i].Name
	}
	return rows, nil
}

// printVersus prints a split's --versus rows after its own table (nothing
// with --json, whose object holds them).
func printVersus(asJSON bool, split, a, b string, rows []adaptrun.ServedRow) {
	if asJSON {
		return
	}
	a, b = filepath.Base(a), filepath.Base(b) // the table's columns name the files
	fmt.Printf("\n%s split, %s against %s, paired:\n\n", split, b, a)
	adaptrun.WriteVersusMarkdown(os.Stdout, a, b, rows)
}
