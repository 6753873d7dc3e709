package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
)

// perplexityOpts are perplexity's flags.
type perplexityOpts struct {
	mf                 modelFlags
	af                 adapterFlags
	data               string
	ctx, stride, batch int
	asJSON             bool
}

func perplexityCmd() *cobra.Command {
	o := &perplexityOpts{}
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
			return o.run()
		},
	}
	o.mf.inference = true // perplexity only runs the forward
	o.mf.plainHead = func() bool { return !o.af.enabled() }
	o.mf.add(c)
	o.af.add(c, "none", 0)
	c.Flags().StringVar(&o.data, "data", "", "text file to score")
	c.Flags().IntVar(&o.ctx, "context", 0, "window length in tokens (default: the model's context)")
	c.Flags().IntVar(&o.stride, "stride", 0, "window step in tokens (default: half the window)")
	c.Flags().IntVar(&o.batch, "batch", 4, "windows per forward pass")
	c.Flags().BoolVar(&o.asJSON, "json", false, "print a JSON object (perplexity, tokens, nll, ...)")
	return c
}

// run scores the file (adapted through adapt.Runtime.Perplexity with an
// adapter, else model.PerplexityWith) and prints the result.
func (o *perplexityOpts) run() error {
	if o.data == "" {
		return fmt.Errorf("--data FILE is required")
	}
	if err := o.af.check(); err != nil {
		return err
	}
	if o.ctx < 0 {
		return fmt.Errorf("--context %d: want 0 (the model's context) or more", o.ctx)
	}
	if o.stride < 0 {
		return fmt.Errorf("--stride %d: want 0 (half the window) or more", o.stride)
	}
	if err := positive("--batch", o.batch); err != nil {
		return err
	}
	text, err := os.ReadFile(o.data)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	s, err := o.mf.load()
	if err != nil {
		return err
	}
	defer s.close()
	toks := s.tok.Encode(string(text))
	if o.ctx == 0 {
		o.ctx = s.m.Cfg.NCtx
	}
	if o.stride == 0 {
		o.stride = max(o.ctx/2, 1)
	}
	t0 := time.Now()
	rt, err := o.af.runtime(s.m)
	if err != nil {
		return err
	}
	bar := newProgress("perplexity", "windows")
	opt := model.PerplexityOptions{Context: o.ctx, Stride: o.stride, Batch: o.batch, Progress: bar.Set}
	var r model.PerplexityResult
	clusters := 0
	if rt != nil {
		defer rt.Free()
		r, clusters, err = rt.Perplexity(toks, opt, o.af.planOptions())
	} else {
		r, err = s.m.PerplexityWith(toks, opt)
	}
	bar.Finish()
	if err != nil {
		return err
	}
	if o.asJSON {
		m := map[string]any{"file": o.data, "perplexity": r.Perplexity, "nll": r.NLL, "tokens": r.Tokens,
			"windows": r.Windows, "context": r.Context, "stride": r.Stride,
			"seconds": time.Since(t0).Seconds(), "backend": s.label, "adapter": o.af.spec}
		if rt != nil {
			m["adapter_kind"], m["clusters"] = rt.Meta.Kind, clusters
		}
		return printJSON(os.Stdout, m)
	}
	fmt.Printf("perplexity %.4f over %d tokens (nll %.2f nats, context %d, stride %d, %d windows, %.1fs on %s)\n",
		r.Perplexity, r.Tokens, r.NLL, r.Context, r.Stride, r.Windows, time.Since(t0).Seconds(), s.label)
	if rt != nil {
		fmt.Printf("adapted: %s; %d windows in %d clusters (%s mode)\n", describeAdapter(rt.Meta), r.Windows, clusters, o.af.mode)
	}
	return nil
}
