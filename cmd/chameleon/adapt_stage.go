package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

const adaptStageLong = `The self-check scores up to 64 of a prompt's last predictions, one
projection onto the vocabulary each, which is most of what adaptation adds
to a prefill. A staged check scores every stride-th of them first and keeps
the update on that evidence alone where its mean gain passes a margin;
only the other prompts have the rest scored. This scores the windows
file's validation (adaptation domains) and fit (pretraining domains)
splits once with the self-check off, applies each rule of the grid to
those losses, prints the table, and writes the adapter (--out) with the
cheapest rule whose served change on both splits is within the
tolerances of the one-stage check's; none: the file keeps one stage.
No test window is read, and so no held-out domain: the fit split's
pretraining windows are the only other-domain evidence, and few of them
pass the gate. Score the written file with adapt score before shipping
it (on the shipped default's windows the chosen rule kept the adaptation
gain and cost held-out harm: docs/adapt-bench/staged-check).`

func adaptStageCmd() *cobra.Command {
	var mf modelFlags
	var adapterSpec, windowsIn, out, report, fromJSON string
	o := adaptrun.DefaultStageOpts()
	c := &cobra.Command{
		Use:   "stage --adapter FILE --windows FILE --out FILE",
		Short: "Choose a staged self-check on validation and write the adapter with it",
		Long:  adaptStageLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if fromJSON != "" { // redraw a saved choice
				choice, err := adaptrun.ReadStageChoice(fromJSON)
				if err != nil {
					return err
				}
				choice.Markdown(os.Stdout)
				return writeStageReport(choice, report)
			}
			if windowsIn == "" || out == "" {
				return fmt.Errorf("--windows (adapt bench --save-windows) and --out (the adapter to write) are needed")
			}
			if err := checkOutDir("--out", out); err != nil {
				return err
			}
			w, s, a, err := mf.loadWindowsAdapter(windowsIn, adapterSpec)
			if err != nil {
				return err
			}
			defer s.close()
			bar := newBar("scoring", "windows")
			plain, at := logProgress(os.Stderr, 30*time.Second), "validation"
			choice, err := adaptrun.ChooseStages(s.m, a, w, o, func(split string, done, total int) {
				if split != at { // a new split: its own rate and ETA
					plain, at = logProgress(os.Stderr, 30*time.Second), split
				}
				bar.Describe("scoring " + split)
				bar.ChangeMax(total)
				_ = bar.Set(done)
				plain(done, total, "scoring "+split)
			})
			_ = bar.Finish()
			if err != nil {
				return err
			}
			choice.Markdown(os.Stdout)
			if err := writeStageReport(choice, report); err != nil {
				return err
			}
			staged, err := adaptrun.WithStages(a, choice.Stages())
			if err != nil {
				return err
			}
			if err := adapt.Save(out, staged); err != nil {
				return err
			}
			fmt.Printf("\nwrote %s: %s\n", out, describeAdapter(staged.Meta))
			return nil
		},
	}
	mf.add(c)
	fl := c.Flags()
	fl.StringVar(&adapterSpec, "adapter", "default", "adapter file, or default (the embedded hyper-network)")
	fl.StringVar(&windowsIn, "windows", "", "windows file (adapt bench --save-windows)")
	fl.StringVar(&out, "out", "", "the adapter file to write, with the chosen rule")
	fl.StringVar(&report, "report", "", "directory for stages.md, stages.json and stages.png (optional)")
	fl.StringVar(&fromJSON, "from-json", "", "a saved stages.json to print and redraw into --report instead of scoring")
	fl.IntSliceVar(&o.Strides, "strides", o.Strides, "first-stage strides to try")
	fl.Float64SliceVar(&o.Margins, "margins", o.Margins, "margins to try (nats/token)")
	fl.Float64Var(&o.TolVal, "tol-val", o.TolVal, "how much worse than the one-stage check's validation change a rule may be (nats/token)")
	fl.Float64Var(&o.TolFit, "tol-fit", o.TolFit, "how much worse than the one-stage check's fit-split change a rule may be (nats/token)")
	fl.IntVar(&o.Batch, "batch", o.Batch, "windows a batch (a plan)")
	fl.IntVar(&o.CheckTokens, "check-tokens", 0, "the self-check's window, as the runtime's --check-tokens (0: 64)")
	return c
}

// writeStageReport writes the table, its JSON and its plot into dir ("":
// nowhere).
func writeStageReport(c *adaptrun.StageChoice, dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeReportFiles(c, dir, "stages", ".json")
}
