package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
)

// generateCmd is `chameleon generate`.
//
// (Over 80 lines: its flag declarations and the one path from prompts to
// printed generations, with the adapter's plan and the token cache on it.)
func generateCmd() *cobra.Command {
	var af adapterFlags
	mf := modelFlags{inference: true, plainHead: func() bool { return !af.enabled() }} // generate only runs the forward
	var file string
	var opt model.GenerateOptions
	var stops []string
	var truncate, eot, asJSON, cache bool
	c := &cobra.Command{
		Use:   "generate [PROMPT...]",
		Short: "Continue prompts (arguments, --file with one per line, or stdin), batched, streaming tokens as produced",
		Long: `Continue prompts as one batch, streaming tokens as produced when there is one prompt.

With --adapter, the prompts are grouped (k-means on their token-embedding features, or
the adapter's training centroids with --adapt-mode online) and every prompt is continued
with its own cluster's low-rank update of the output projection, all in one batch; the
cluster of each prompt is printed on stderr.`,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if err := checkGenerateFlags(opt); err != nil {
				return err
			}
			prompts, err := readPrompts(args, file)
			if err != nil {
				return err
			}
			if err := af.check(); err != nil {
				return err
			}
			if cache && !af.enabled() {
				return fmt.Errorf("--cache pools the prompts by an adapter's plan: give --adapter (default: the shipped hyper-network)")
			}
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			ids, err := encodePrompts(s, prompts, truncate)
			if err != nil {
				return err
			}
			var rt *adapt.Runtime
			var plan *adapt.Plan
			var pf *adapt.Prefill
			if cache {
				if rt, plan, err = af.plan(s.m, ids, !asJSON); err != nil {
					return err
				}
				if rt != nil {
					defer rt.Free()
					defer plan.Free()
					if opt.Adapter, err = cacheAdapter(plan, ids, s.m.Cfg.VocabSize, !asJSON); err != nil {
						return err
					}
				}
			} else if rt, err = af.runtime(s.m); err != nil {
				return err
			} else if rt != nil {
				// The plan comes from the prompts' own prefill where it can
				// (a head-only adapter conditioned on hidden states): the
				// prompts run through the model once, not twice.
				defer rt.Free()
				if pf, err = rt.Prefill(ids, af.planOptions()); err != nil {
					return err
				}
				defer pf.Free()
				opt.Adapter = pf
			}
			opt.Stop = stops
			opt.StopAtEOT = eot
			single := len(prompts) == 1 && !asJSON
			if single {
				// One prompt streams its text as it is produced.
				fmt.Print(prompts[0])
				opt.OnText = func(_ int, b []byte) { os.Stdout.Write(b) }
			}
			// No sequence outgrows the context: a larger --max-tokens
			// would only overflow the cache's length.
			maxTokens := opt.MaxTokens
			opt.MaxTokens = min(opt.MaxTokens, s.m.Cfg.NCtx)
			t0 := time.Now()
			gens, err := s.m.Generate(s.tok, ids, opt)
			if err != nil {
				return err
			}
			el := time.Since(t0)
			// After the output (the streamed text's newline, the rate).
			defer noteContext(os.Stderr, gens, s.m.Cfg.NCtx, maxTokens)
			if pf != nil {
				plan = pf.Plan()
				if !asJSON {
					printClusters(os.Stderr, rt, plan, af.mode)
				}
			}
			var clusters []int
			if plan != nil {
				clusters = plan.Cluster
			}
			if asJSON {
				return printJSON(os.Stdout, generationReport(s, rt, prompts, gens, clusters, el))
			}
			printGenerations(s, prompts, gens, single, el)
			return nil
		},
	}
	mf.add(c)
	af.add(c, "none", 0)
	c.Flags().StringVar(&file, "file", "", "read prompts from FILE, one per line")
	c.Flags().IntVar(&opt.MaxTokens, "max-tokens", 64, "new tokens per prompt at most")
	c.Flags().Float32Var(&opt.Sample.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	c.Flags().IntVar(&opt.Sample.TopK, "top-k", 40, "keep the K most likely tokens (0: all)")
	c.Flags().Float32Var(&opt.Sample.TopP, "top-p", 0.95, "keep the smallest set of tokens with this much probability (1: all)")
	c.Flags().Uint64Var(&opt.Seed, "seed", 1, "random seed (prompt i uses seed+i)")
	c.Flags().StringArrayVar(&stops, "stop", nil, "stop a prompt's generation before this string (repeatable)")
	c.Flags().BoolVar(&eot, "stop-at-eot", true, "stop at <|endoftext|>")
	c.Flags().BoolVar(&truncate, "truncate", false, "keep the last tokens of prompts longer than the context instead of failing")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object when done instead of streaming text (docs/cli-json.md)")
	c.Flags().BoolVar(&cache, "cache", false, "the token and neural caches (chameleon adapt cache): mix each prompt's own tokens so far and its cluster's prompts into the output, by counts and by final hidden states, the weights chosen per cluster on the prompts (needs --adapter)")
	return c
}

// cacheAdapter turns on the plan's token and neural caches over prompts ids (pools of
// at most adapt.DefaultBatchSize by the plan's features, a uniform prior)
// and returns the adapter that runs it; with show, each pool's inputs and
// weights are printed on stderr.
func cacheAdapter(plan *adapt.Plan, ids [][]int32, vocab int, show bool) (model.Adapter, error) {
	if err := plan.EnableCache(ids, adapt.UniformCache(vocab), adapt.DefaultBatchSize); err != nil {
		return nil, err
	}
	if show {
		pools := map[int][]int{}
		ws := map[int]adapt.CacheWeights{}
		for i := range ids {
			g, w, _ := plan.CacheWeightsOf(i)
			pools[g], ws[g] = append(pools[g], i+1), w
		}
		for g := range len(pools) {
			w := ws[g]
			fmt.Fprintf(os.Stderr, "cache pool %d: inputs %s, weights own %.2f pool %.2f neural own %.2f neural pool %.2f theta %g\n",
				g, joinInts(pools[g]), w.Own, w.Pool, w.NeuralOwn, w.NeuralPool, w.Theta)
		}
	}
	return plan.CacheAdapter(nil)
}

// generateReport is what `chameleon generate --json` prints.
type generateReport struct {
	Device      string      `json:"device"`
	Adapter     string      `json:"adapter,omitempty"` // with --adapter
	Generations []generated `json:"generations"`
	Tokens      int         `json:"tokens"`
	Seconds     float64     `json:"seconds"`
	TokensPerS  float64     `json:"tokens_per_s"`
}

type generated struct {
	Index   int    `json:"index"` // 1-based, in prompt order
	Prompt  string `json:"prompt"`
	Text    string `json:"text"` // the continuation, without the prompt
	Tokens  int    `json:"tokens"`
	Cluster *int   `json:"cluster,omitempty"` // with --adapter: the prompt's cluster (-1: kept at the base model)
}

// encodePrompts tokenizes the prompts, refusing an empty one and one over
// the context (keeping its last tokens with truncate).
func encodePrompts(s *session, prompts []string, truncate bool) ([][]int32, error) {
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		ids[i] = s.tok.Encode(p)
		if len(ids[i]) == 0 {
			return nil, fmt.Errorf("prompt %d is empty", i+1)
		}
		if limit := s.m.Cfg.NCtx - 1; len(ids[i]) > limit {
			if !truncate {
				return nil, fmt.Errorf("prompt %d has %d tokens, over the context of %d (pass --truncate to keep its last %d)", i+1, len(ids[i]), s.m.Cfg.NCtx, limit)
			}
			ids[i] = ids[i][len(ids[i])-limit:]
		}
	}
	return ids, nil
}

// generationReport is generate's --json report; clusters is nil without
// an adapter.
func generationReport(s *session, rt *adapt.Runtime, prompts []string, gens []model.Generation, clusters []int, el time.Duration) generateReport {
	rep := generateReport{Device: s.label, Seconds: el.Seconds()}
	if rt != nil {
		rep.Adapter = describeAdapter(rt.Meta)
	}
	for i, g := range gens {
		gp := generated{Index: i + 1, Prompt: prompts[i], Text: string(g.Text), Tokens: len(g.Tokens)}
		if clusters != nil {
			c := clusters[i]
			gp.Cluster = &c
		}
		rep.Tokens += len(g.Tokens)
		rep.Generations = append(rep.Generations, gp)
	}
	rep.TokensPerS = float64(rep.Tokens) / el.Seconds()
	return rep
}

// printGenerations ends generate's text output: the continuations (a
// single prompt's was streamed already) and the rate on stderr.
func printGenerations(s *session, prompts []string, gens []model.Generation, single bool, el time.Duration) {
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
			return nil, fmt.Errorf("--file: %w", err)
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
		if file != "" {
			return nil, fmt.Errorf("--file: %w", err)
		}
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no prompts: give them as arguments, with --file, or on stdin")
	}
	return out, nil
}

// plan is the adaptation of the prompts ids when --adapter gives one (nil
// runtime and plan otherwise); with show, the clusters are printed on
// stderr. The caller frees both.
func (af *adapterFlags) plan(m *model.Model, ids [][]int32, show bool) (*adapt.Runtime, *adapt.Plan, error) {
	rt, err := af.runtime(m)
	if err != nil || rt == nil {
		return nil, nil, err
	}
	plan, err := rt.Plan(ids, af.planOptions())
	if err != nil {
		rt.Free()
		return nil, nil, err
	}
	if show {
		printClusters(os.Stderr, rt, plan, af.mode)
	}
	return rt, plan, nil
}

// printClusters writes the adapter and which inputs (1-based) each of the
// plan's clusters holds.
func printClusters(w io.Writer, rt *adapt.Runtime, p *adapt.Plan, mode string) {
	fmt.Fprintf(w, "adapter: %s\n", describeAdapter(rt.Meta))
	if rt.Meta.Kind != adapt.KindHyper {
		fmt.Fprintf(w, "every input gets the same update\n")
		return
	}
	fmt.Fprintf(w, "%d clusters (%s mode):\n", p.K, mode)
	for c, ms := range clusterMembers(p.Cluster, p.K) {
		if len(ms) > 0 {
			fmt.Fprintf(w, "  cluster %d: inputs %s\n", c, joinInts(ms))
		}
	}
	var base []int
	for i, c := range p.Cluster {
		if c < 0 {
			base = append(base, i+1)
		}
	}
	if len(base) > 0 {
		fmt.Fprintf(w, "  the base model (the gate or the self-check kept them): inputs %s\n", joinInts(base))
	}
}

func joinInts(xs []int) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}
