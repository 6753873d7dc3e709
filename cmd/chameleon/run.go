package main

import (
	_ "embed"
	"fmt"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/model"
)

// samplesText is the mixed multi-domain prompt set of `chameleon run`.
//
//go:embed samples.txt
var samplesText string

// sample is one demo prompt and the domain it was written as.
type sample struct{ domain, text string }

// parseSamples reads "domain<TAB>text" lines (\n and \t escapes in the
// text; # comments and blank lines skipped).
func parseSamples(s string) ([]sample, error) {
	var out []sample
	for n, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		dom, text, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(dom) == "" || strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("line %d: want \"domain<TAB>text\"", n+1)
		}
		text = strings.NewReplacer(`\n`, "\n", `\t`, "\t").Replace(text)
		out = append(out, sample{strings.TrimSpace(dom), text})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("%d prompts: the demo needs at least 2", len(out))
	}
	return out, nil
}

func runCmd() *cobra.Command {
	var mf modelFlags
	var af adapterFlags
	var promptsFile string
	var maxTokens int
	c := &cobra.Command{
		Use:   "run",
		Short: "The main demo: cluster a mixed set of prompts, adapt each cluster with the hyper-network, compare perplexity and continuations with and without",
		Long: `The main demo of ChamaleonLLM's batch-aware adaptation (make run).

It loads the default model and hyper-network (or --model and --adapter), takes a mixed
multi-domain set of sample prompts (code, prose, scripture, man pages, email, quotes;
--prompts FILE for others: "domain<TAB>text" lines), and
  1. clusters the prompts (k-means on the adapter's features: for the default, mean final
     hidden states of the base model over each prompt) and shows which
     prompts went together, with the domains they were written as (the clustering
     never sees these labels);
  2. scores each prompt's own text (next-token perplexity) with the base model and with
     its cluster's low-rank update, per prompt and pooled per cluster;
  3. continues every prompt greedily, without and with adaptation, all prompts in one
     batch, each with its own cluster's update.
The adapted scores condition on the whole prompt's feature (as in the paper, the batch
is clustered on its inputs), so they are not a held-out measure: see ` + "`chameleon adapt bench`" + `.
With an adapter that self-checks (the default does), a prompt keeps its update only where
the update lowers that prompt's own loss, so no prompt's score here can get worse: an
in-sample view by construction.`,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if !af.enabled() {
				return fmt.Errorf("--adapter none: the demo compares the base model with the adapted one; give an adapter")
			}
			if err := af.check(); err != nil {
				return err
			}
			if maxTokens <= 0 {
				return fmt.Errorf("--max-tokens %d: want at least 1", maxTokens)
			}
			text := samplesText
			if promptsFile != "" {
				b, err := os.ReadFile(promptsFile)
				if err != nil {
					return err
				}
				text = string(b)
			}
			samples, err := parseSamples(text)
			if err != nil {
				return fmt.Errorf("prompts: %w", err)
			}
			t0 := time.Now()
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			rt, err := af.runtime(s.m)
			if err != nil {
				return err
			}
			defer rt.Free()
			return runDemo(s, rt, samples, af, maxTokens, t0)
		},
	}
	mf.add(c)
	af.add(c, "default", 6)
	c.Flags().StringVar(&promptsFile, "prompts", "", "prompt set to use instead of the built-in one (\"domain<TAB>text\" lines, \\n for a line break)")
	c.Flags().IntVar(&maxTokens, "max-tokens", 20, "greedy continuation length")
	return c
}

// runDemo prints the clusters, the perplexity table and the continuations.
func runDemo(s *session, rt *adapt.Runtime, samples []sample, af adapterFlags, maxTokens int, t0 time.Time) error {
	m := s.m
	limit := m.Cfg.NCtx - maxTokens
	if limit < 2 {
		return fmt.Errorf("--max-tokens %d leaves no room for a prompt in the context of %d", maxTokens, m.Cfg.NCtx)
	}
	ids := make([][]int32, len(samples))
	for i, sm := range samples {
		ids[i] = s.tok.Encode(sm.text)
		if len(ids[i]) < 2 {
			return fmt.Errorf("prompt %d (%s) has %d tokens: it needs 2 to be scored", i+1, sm.domain, len(ids[i]))
		}
		if len(ids[i]) > limit {
			ids[i] = ids[i][len(ids[i])-limit:] // keep the end, which the continuation follows
		}
	}
	loaded := time.Since(t0)
	t1 := time.Now()
	plan, err := rt.Plan(ids, af.planOptions())
	if err != nil {
		return err
	}
	defer plan.Free()
	planTime := time.Since(t1)

	fmt.Printf("Chameleon: batch-aware low-rank adaptation (ChamaleonLLM) on %s\n", s.label)
	fmt.Printf("model: %d layers, width %d, vocabulary %d, context %d (%d parameters)\n", m.Cfg.NLayer, m.Cfg.NEmbd, m.Cfg.VocabSize, m.Cfg.NCtx, m.Cfg.Params())
	fmt.Printf("adapter: %s\n", describeAdapter(rt.Meta))
	fmt.Printf("%d prompts; ", len(samples))
	if rt.Meta.Kind == adapt.KindHyper {
		fmt.Printf("%d clusters (%s mode), features + clustering + hyper-network in %s\n\n", plan.K, af.mode, planTime.Round(time.Millisecond))
	} else {
		fmt.Printf("a static adapter: one update for every prompt\n\n")
	}

	members := clusterMembers(plan.Cluster, plan.K)
	fmt.Println("Clusters found (the domain labels are shown, never used):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  cluster\tprompts\tdomains")
	for c, ms := range members {
		if len(ms) == 0 {
			continue
		}
		doms := make([]string, len(ms))
		for i, p := range ms {
			doms[i] = samples[p-1].domain
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\n", c, joinInts(ms), strings.Join(doms, ", "))
	}
	tw.Flush()
	var gated []int
	for i, c := range plan.Cluster {
		if c < 0 {
			gated = append(gated, i+1)
		}
	}
	if len(gated) > 0 {
		fmt.Printf("  kept at the base model by the adapter's gate or self-check (cluster -1): %s\n", joinInts(gated))
	}

	t2 := time.Now()
	base, err := m.ScoreChunked(ids, func(int) model.Adapter { return nil })
	if err != nil {
		return err
	}
	baseTime := time.Since(t2)
	adapted, err := m.ScoreChunked(ids, func(first int) model.Adapter { return plan.AdapterFrom(first, nil) })
	if err != nil {
		return err
	}
	scoreTime := time.Since(t2)
	adaptedTime := scoreTime - baseTime
	fmt.Println("\nPerplexity of each prompt's own text (lower is better):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  #\tdomain\tcluster\ttokens\tbase\tadapted\tchange\t")
	for i, sm := range samples {
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%d\t%.2f\t%.2f\t%s\t\n", i+1, sm.domain, plan.Cluster[i], base[i].Tokens,
			base[i].Perplexity(), adapted[i].Perplexity(), change(base[i].Perplexity(), adapted[i].Perplexity()))
	}
	tw.Flush()
	fmt.Println("\nPer cluster (pooled over its prompts' tokens):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  cluster\tprompts\ttokens\tbase\tadapted\tchange\t")
	var all [2]model.SequenceScore
	for c, ms := range members {
		if len(ms) == 0 {
			continue
		}
		var b, a model.SequenceScore
		for _, p := range ms {
			b.NLL, b.Tokens = b.NLL+base[p-1].NLL, b.Tokens+base[p-1].Tokens
			a.NLL, a.Tokens = a.NLL+adapted[p-1].NLL, a.Tokens+adapted[p-1].Tokens
		}
		fmt.Fprintf(tw, "  %d\t%d\t%d\t%.2f\t%.2f\t%s\t\n", c, len(ms), b.Tokens, b.Perplexity(), a.Perplexity(), change(b.Perplexity(), a.Perplexity()))
	}
	for i := range samples { // every prompt, those the gate kept at the base model too
		all[0].NLL, all[0].Tokens = all[0].NLL+base[i].NLL, all[0].Tokens+base[i].Tokens
		all[1].NLL, all[1].Tokens = all[1].NLL+adapted[i].NLL, all[1].Tokens+adapted[i].Tokens
	}
	fmt.Fprintf(tw, "  all\t%d\t%d\t%.2f\t%.2f\t%s\t\n", len(samples), all[0].Tokens, all[0].Perplexity(), all[1].Perplexity(), change(all[0].Perplexity(), all[1].Perplexity()))
	tw.Flush()

	t3 := time.Now()
	opt := model.GenerateOptions{MaxTokens: maxTokens, StopAtEOT: true} // greedy
	plain, err := m.Generate(s.tok, ids, opt)
	if err != nil {
		return err
	}
	opt.Adapter = plan.Adapter(nil)
	withAd, err := m.Generate(s.tok, ids, opt)
	if err != nil {
		return err
	}
	genTime := time.Since(t3)
	fmt.Printf("\nGreedy continuations (%d tokens; all prompts in one batch, each with its own cluster's update):\n", maxTokens)
	for i, sm := range samples {
		fmt.Printf("\n[%d] %s, cluster %d: %s\n", i+1, sm.domain, plan.Cluster[i], oneLine(tail(sm.text, 60)))
		fmt.Printf("    base:    %s\n", oneLine(string(plain[i].Text)))
		fmt.Printf("    adapted: %s\n", oneLine(string(withAd[i].Text)))
	}
	fmt.Printf("\nload %s, plan %s, scoring %s (base) + %s (adapted), generation %s; total %s\n", loaded.Round(time.Millisecond), planTime.Round(time.Millisecond),
		baseTime.Round(time.Millisecond), adaptedTime.Round(time.Millisecond), genTime.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	return nil
}

// change is the relative change from a to b, signed, in percent.
func change(a, b float64) string {
	if a == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", 100*(b-a)/a)
}

// oneLine shows text on one line: line breaks and tabs escaped.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(s)
}

// tail is the last n runes of s, with "…" when cut.
func tail(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n:])
}
