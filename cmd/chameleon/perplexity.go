package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
)

func perplexityCmd() *cobra.Command {
	var mf modelFlags
	var af adapterFlags
	var data string
	var ctx, stride, batch int
	var asJSON bool
	c := &cobra.Command{
		Use:   "perplexity --data FILE",
		Short: "Next-token perplexity of a text file, sliding window of the context length with a stride",
		Long: `Next-token perplexity of a text file: windows of --context tokens moved by --stride,
every token after the first scored once.

With --adapter, every window is a sequence: the windows are grouped as a whole (k-means
on their token-embedding features, or the adapter's training centroids with --adapt-mode
online) and each window is scored with its own cluster's low-rank update of the output
projection. The feature of a window covers all of its tokens, the scored ones included,
as when a batch is clustered in the paper.`,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if data == "" {
				return fmt.Errorf("--data FILE is required")
			}
			if err := af.check(); err != nil {
				return err
			}
			text, err := os.ReadFile(data)
			if err != nil {
				return err
			}
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			toks := s.tok.Encode(string(text))
			if ctx == 0 {
				ctx = s.m.Cfg.NCtx
			}
			if stride == 0 {
				stride = max(ctx/2, 1)
			}
			opt := model.PerplexityOptions{Context: ctx, Stride: stride, Batch: batch}
			t0 := time.Now()
			rt, err := af.runtime(s.m)
			if err != nil {
				return err
			}
			adapted := ""
			clusters := 0
			if rt != nil {
				defer rt.Free()
				wins := model.PerplexityWindows(toks, ctx, stride)
				if wins == nil {
					return fmt.Errorf("nothing to score: %d tokens, context %d, stride %d", len(toks), ctx, stride)
				}
				plan, err := rt.Plan(wins, af.planOptions())
				if err != nil {
					return err
				}
				defer plan.Free()
				clusters = plan.K
				opt.Adapters = func(first int, _ [][]int32) (model.Adapter, func(), error) {
					return plan.AdapterFrom(first, nil), nil, nil
				}
				adapted = fmt.Sprintf("%s; %d windows in %d clusters (%s mode)", describeAdapter(rt.Meta), len(wins), plan.K, af.mode)
			}
			bar := newProgress("perplexity", "windows")
			opt.Progress = bar.Set
			r, err := s.m.PerplexityWith(toks, opt)
			bar.Finish()
			if err != nil {
				return err
			}
			if asJSON {
				m := map[string]any{"file": data, "perplexity": r.Perplexity, "nll": r.NLL, "tokens": r.Tokens,
					"windows": r.Windows, "context": r.Context, "stride": r.Stride,
					"seconds": time.Since(t0).Seconds(), "backend": s.label, "adapter": af.spec}
				if rt != nil {
					m["adapter_kind"], m["clusters"] = rt.Meta.Kind, clusters
				}
				return printJSON(os.Stdout, m)
			}
			fmt.Printf("perplexity %.4f over %d tokens (nll %.2f nats, context %d, stride %d, %d windows, %.1fs on %s)\n",
				r.Perplexity, r.Tokens, r.NLL, r.Context, r.Stride, r.Windows, time.Since(t0).Seconds(), s.label)
			if adapted != "" {
				fmt.Printf("adapted: %s\n", adapted)
			}
			return nil
		},
	}
	mf.add(c)
	af.add(c, "none", 0)
	c.Flags().StringVar(&data, "data", "", "text file to score")
	c.Flags().IntVar(&ctx, "context", 0, "window length in tokens (default: the model's context)")
	c.Flags().IntVar(&stride, "stride", 0, "window step in tokens (default: half the window)")
	c.Flags().IntVar(&batch, "batch", 4, "windows per forward pass")
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (perplexity, tokens, nll, ...)")
	return c
}
