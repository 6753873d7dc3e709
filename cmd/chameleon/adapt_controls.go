package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

// adaptControlsCmd scores a saved hyper adapter under the benchmark's
// groupings and controls (adaptrun.Controls).
func adaptControlsCmd() *cobra.Command {
	var mf modelFlags
	var adapterSpec, windowsIn, name, out string
	var iters int
	c := &cobra.Command{
		Use:   "controls --adapter FILE --windows FILE --out DIR",
		Short: "Score a saved hyper-network under the benchmark's groupings and controls (mean update, shuffled clusters, random batches)",
		Long: `adapt bench scores each ChamaleonLLM method's online, clustered and random
groupings and its two controls (the mean generated update for every window;
shuffled cluster assignments) for the seeds it trains. This scores the same
rows for any saved hyper-network (adapt train --seed N, or a file the bench
wrote) on the test split of --windows (adapt bench --save-windows), with the
file's training centroids, gate and self-check, and pairs them: online minus
the mean update, online minus shuffled clusters, clustered minus random
batches and more, with paired bootstrap 95% intervals. Writes
DIR/controls.md and DIR/controls.json (per-window losses included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if windowsIn == "" || out == "" {
				return fmt.Errorf("--windows and --out are required")
			}
			w, err := adaptrun.LoadWindows(windowsIn)
			if err != nil {
				return err
			}
			if len(w.Splits["test"]) == 0 {
				return fmt.Errorf("--windows %s has no test split", windowsIn)
			}
			w.Keep("test")
			s, tb, base, err := mf.loadForAdapters("score the controls")
			if err != nil {
				return err
			}
			defer s.close()
			a, err := loadAdapter(adapterSpec, s.m)
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(adapterSpec), ".safetensors")
			}
			sets, err := prepareWithBar(s, w)
			if err != nil {
				return err
			}
			e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Head(), Base: base, Batch: adapt.DefaultBatchSize, Seed: 1}
			res, err := adaptrun.Controls(e, a, name, sets.Test, iters, func(what string) { fmt.Fprintln(os.Stderr, "scoring", what) })
			if err != nil {
				return err
			}
			return writeReport(out, "controls", res.Markdown, res)
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&adapterSpec, "adapter", "default", "the hyper-network's file, or default (the embedded one)")
	fl.StringVar(&windowsIn, "windows", "", "the benchmark's windows (adapt bench --save-windows)")
	fl.StringVar(&name, "name", "", "the rows' label (default: the file's name)")
	fl.IntVar(&iters, "bootstrap", 1000, "paired bootstrap resamples")
	fl.StringVar(&out, "out", "", "output dir")
	return c
}

// writeReport writes a scoring command's report into dir: NAME.md from
// markdown, NAME.json from v, and prints the markdown.
func writeReport(dir, name string, markdown func(io.Writer), v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	markdown(&md)
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	js, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name+".json"), js, 0o644)
	}
	fmt.Print(md.String())
	return err
}
