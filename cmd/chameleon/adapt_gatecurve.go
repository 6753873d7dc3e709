package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

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
			qList, err := parseQuantiles(qs)
			if err != nil {
				return err
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
			e := &adaptrun.Evaluator{TB: tb, Wte: s.m.W.Head(), Base: base, Batch: adapt.DefaultBatchSize, Seed: 1}
			pts, err := adaptrun.GateCurve(res, method, a, sets, adapt.DefaultBatchSize, qList, e)
			if err != nil {
				return err
			}
			md, err := writeGateCurve(out, method, pts)
			if err != nil {
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

// parseQuantiles reads --quantiles: numbers in (0, 1], comma-separated.
func parseQuantiles(qs string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(qs, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0 && v <= 1) {
			return nil, fmt.Errorf("--quantiles %q: want numbers in (0, 1]", qs)
		}
		out = append(out, v)
	}
	return out, nil
}

// writeGateCurve writes out/gate-curve.md and out/gate-curve.png and
// returns the markdown.
func writeGateCurve(out, method string, pts []adaptrun.GatePoint) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	md := adaptrun.GateCurveMarkdown(method, pts)
	if err := os.WriteFile(filepath.Join(out, "gate-curve.md"), []byte(md), 0o644); err != nil {
		return "", err
	}
	return md, adaptrun.WriteGateCurvePNG(filepath.Join(out, "gate-curve.png"), pts)
}
