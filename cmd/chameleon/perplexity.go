package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func perplexityCmd() *cobra.Command {
	var mf modelFlags
	var data string
	var ctx, stride, batch int
	var asJSON bool
	c := &cobra.Command{
		Use:   "perplexity --data FILE",
		Short: "Next-token perplexity of a text file, sliding window of the context length with a stride",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if data == "" {
				return fmt.Errorf("--data FILE is required")
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
			bar := newBar("perplexity", "windows")
			t0 := time.Now()
			r, err := s.m.Perplexity(toks, ctx, stride, batch, func(done, total int) {
				bar.ChangeMax(total)
				bar.Set(done)
			})
			bar.Finish()
			if err != nil {
				return err
			}
			if asJSON {
				m := map[string]any{"file": data, "perplexity": r.Perplexity, "nll": r.NLL, "tokens": r.Tokens,
					"windows": r.Windows, "context": r.Context, "stride": r.Stride,
					"seconds": time.Since(t0).Seconds(), "backend": s.label}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			}
			fmt.Printf("perplexity %.4f over %d tokens (nll %.2f nats, context %d, stride %d, %d windows, %.1fs on %s)\n",
				r.Perplexity, r.Tokens, r.NLL, r.Context, r.Stride, r.Windows, time.Since(t0).Seconds(), s.label)
			return nil
		},
	}
	mf.add(c)
	c.Flags().StringVar(&data, "data", "", "text file to score")
	c.Flags().IntVar(&ctx, "context", 0, "window length in tokens (default: the model's context)")
	c.Flags().IntVar(&stride, "stride", 0, "window step in tokens (default: half the window)")
	c.Flags().IntVar(&batch, "batch", 4, "windows per forward pass")
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (perplexity, tokens, nll, ...)")
	return c
}
