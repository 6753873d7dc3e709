package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
)

func generateCmd() *cobra.Command {
	var mf modelFlags
	var file string
	var opt model.GenerateOptions
	var stops []string
	var truncate, eot bool
	c := &cobra.Command{
		Use:   "generate [PROMPT...]",
		Short: "Continue prompts (arguments, --file with one per line, or stdin), batched, streaming tokens as produced",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			prompts, err := readPrompts(args, file)
			if err != nil {
				return err
			}
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			ids := make([][]int32, len(prompts))
			for i, p := range prompts {
				ids[i] = s.tok.Encode(p)
				if len(ids[i]) == 0 {
					return fmt.Errorf("prompt %d is empty", i+1)
				}
				if limit := s.m.Cfg.NCtx - 1; len(ids[i]) > limit {
					if !truncate {
						return fmt.Errorf("prompt %d has %d tokens, over the context of %d (pass --truncate to keep its last %d)", i+1, len(ids[i]), s.m.Cfg.NCtx, limit)
					}
					ids[i] = ids[i][len(ids[i])-limit:]
				}
			}
			opt.Stop = stops
			opt.StopAtEOT = eot
			single := len(prompts) == 1
			if single {
				// One prompt streams its text as it is produced.
				fmt.Print(prompts[0])
				opt.OnText = func(_ int, b []byte) { os.Stdout.Write(b) }
			}
			t0 := time.Now()
			gens, err := s.m.Generate(s.tok, ids, opt)
			if err != nil {
				return err
			}
			el := time.Since(t0)
			n := 0
			for i, g := range gens {
				n += len(g.Tokens)
				if single {
					fmt.Println()
				} else {
					fmt.Printf("[%d] %s%s\n", i+1, prompts[i], g.Text)
				}
			}
			fmt.Fprintf(os.Stderr, "%d prompts, %d tokens in %.2fs (%.1f tokens/s) on %s\n", len(prompts), n, el.Seconds(), float64(n)/el.Seconds(), s.label)
			return nil
		},
	}
	mf.add(c)
	c.Flags().StringVar(&file, "file", "", "read prompts from FILE, one per line")
	c.Flags().IntVar(&opt.MaxTokens, "max-tokens", 64, "new tokens per prompt at most")
	c.Flags().Float32Var(&opt.Sample.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	c.Flags().IntVar(&opt.Sample.TopK, "top-k", 40, "keep the K most likely tokens (0: all)")
	c.Flags().Float32Var(&opt.Sample.TopP, "top-p", 0.95, "keep the smallest set of tokens with this much probability (1: all)")
	c.Flags().Uint64Var(&opt.Seed, "seed", 1, "random seed (prompt i uses seed+i)")
	c.Flags().StringArrayVar(&stops, "stop", nil, "stop a prompt's generation before this string (repeatable)")
	c.Flags().BoolVar(&eot, "stop-at-eot", true, "stop at <|endoftext|>")
	c.Flags().BoolVar(&truncate, "truncate", false, "keep the last tokens of prompts longer than the context instead of failing")
	return c
}

// readPrompts takes prompts from the arguments, else a file, else stdin,
// one per line, skipping empty lines.
func readPrompts(args []string, file string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	var r io.Reader = os.Stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			out = append(out, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no prompts: give them as arguments, with --file, or on stdin")
	}
	return out, nil
}
