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
	var asJSON bool
	c := &cobra.Command{
		Use:   "run",
		Short: "The main demo: cluster a mixed set of prompts, adapt each cluster with the hyper-network, compare perplexity and continuations with and without",
		Long: `The main demo of ChamaleonLLM's batch-aware adaptation (make run).

It loads the default model and hyper-network (or --model and --adapter), takes a mixed
multi-domain set of sample prompts from the six adaptation domains, which the base model
never saw (Python, Emacs Lisp, Vim help, speeches, licences, German; --prompts FILE for
others: "domain<TAB>text" lines), and
  1. clusters the prompts (k-means on the adapter's features: for the default, mean final
     hidden states of the base model over each prompt) and shows which
     prompts went together, with the domains they were written as (the clustering
     never sees these labels);
  2. scores each prompt's own text (next-token perplexity) with the base model, with
     its cluster's low-rank update, and with the update and the token cache (the
     prompt's own tokens so far and its pool's other prompts mixed into the output:
     chameleon adapt cache), per prompt and pooled per cluster;
  3. continues every prompt greedily, without adaptation, with it, and with it and the
     token cache, all prompts in one batch, each with its own cluster's update.
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
			return runDemo(s, rt, samples, af, maxTokens, t0, asJSON)
		},
	}
	mf.add(c)
	af.add(c, "default", 6)
	c.Flags().StringVar(&promptsFile, "prompts", "", "prompt set to use instead of the built-in one (\"domain<TAB>text\" lines, \\n for a line break)")
	c.Flags().IntVar(&maxTokens, "max-tokens", 20, "greedy continuation length")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (docs/cli-json.md)")
	return c
}

// runReport is what `chameleon run` prints (--json: this object). Prompt
// numbers are 1-based; cluster ids are the plan's (0-based; -1: kept at
// the base model by the adapter's gate or self-check).
type runReport struct {
	Device    string       `json:"device"`
	Model     modelSummary `json:"model"`
	Adapter   string       `json:"adapter"`
	Static    bool         `json:"static"` // a static adapter: one update for every prompt
	Mode      string       `json:"adapt_mode"`
	K         int          `json:"k"`
	MaxTokens int          `json:"max_tokens"`
	Clusters  []runCluster `json:"clusters"`
	Gated     []int        `json:"gated_prompts"`
	// CachePools are the token cache's pools (the plan's prompts grouped
	// by their features, as many groups as clusters) and their weights.
	CachePools []runCachePool `json:"cache_pools"`
	Prompts    []runPrompt    `json:"prompts"`
	All        runPool        `json:"all"`
	Seconds    runTimes       `json:"seconds"`
}

type modelSummary struct {
	Layers  int `json:"layers"`
	Width   int `json:"width"`
	Vocab   int `json:"vocab"`
	Context int `json:"context"`
	Params  int `json:"params"`
}

type runCluster struct {
	Cluster int      `json:"cluster"`
	Prompts []int    `json:"prompts"`
	Domains []string `json:"domains"`
	runPool
}

type runPool struct {
	Tokens            int     `json:"tokens"`
	BasePerplexity    float64 `json:"base_perplexity"`
	AdaptedPerplexity float64 `json:"adapted_perplexity"`
	// CachedPerplexity is the adapted model with the token and neural
	// caches: each prompt's own tokens so far and its pool's other prompts
	// mixed in.
	CachedPerplexity float64 `json:"cached_perplexity"`
}

type runCachePool struct {
	Pool       int     `json:"pool"`
	Prompts    []int   `json:"prompts"`
	Own        float64 `json:"own_weight"`
	PoolWeight float64 `json:"pool_weight"`
	NeuralOwn  float64 `json:"neural_own_weight"`
	NeuralPool float64 `json:"neural_pool_weight"`
	Theta      float64 `json:"theta"` // the neural cache's sharpness (0: no neural weight)
}

type runPrompt struct {
	Index     int    `json:"index"`
	Domain    string `json:"domain"`
	Text      string `json:"text"`
	Cluster   int    `json:"cluster"`
	CachePool int    `json:"cache_pool"`
	runPool
	BaseContinuation    string `json:"base_continuation"`
	AdaptedContinuation string `json:"adapted_continuation"`
	CachedContinuation  string `json:"cached_continuation"`
}

type runTimes struct {
	Load         float64 `json:"load"`
	Plan         float64 `json:"plan"`
	ScoreBase    float64 `json:"score_base"`
	ScoreAdapted float64 `json:"score_adapted"`
	Cache        float64 `json:"cache"` // the caches' pools, weights and key buffer
	Generate     float64 `json:"generate"`
	Total        float64 `json:"total"`
}

// runDemo computes the clusters, the perplexities and the continuations
// and prints them (as JSON with asJSON).
func runDemo(s *session, rt *adapt.Runtime, samples []sample, af adapterFlags, maxTokens int, t0 time.Time, asJSON bool) error {
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

	t2 := time.Now()
	base, err := m.ScoreChunked(ids, func(int) model.Adapter { return nil })
	if err != nil {
		return err
	}
	baseTime := time.Since(t2)
	// The adapted scores with the final hidden states: the neural cache's keys.
	adapted, hid, err := adapt.ScoreHiddenChunked(m, ids, func(first, _ int) model.Adapter { return plan.AdapterFrom(first, nil) })
	if err != nil {
		return err
	}
	adaptedTime := time.Since(t2) - baseTime

	tc := time.Now()
	cached, err := enableRunCache(plan, ids, adapted, hid, m.Cfg.VocabSize)
	if err != nil {
		return err
	}
	cacheTime := time.Since(tc)

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
	if opt.Adapter, err = plan.CacheAdapter(nil); err != nil {
		return err
	}
	withCache, err := m.Generate(s.tok, ids, opt)
	if err != nil {
		return err
	}
	genTime := time.Since(t3)

	rep := runReportOf(s, rt.Meta, plan, samples, [3][]model.SequenceScore{base, adapted, cached},
		[3][]model.Generation{plain, withAd, withCache})
	rep.Mode, rep.MaxTokens = af.mode, maxTokens
	rep.Seconds = runTimes{Load: loaded.Seconds(), Plan: planTime.Seconds(), ScoreBase: baseTime.Seconds(),
		ScoreAdapted: adaptedTime.Seconds(), Cache: cacheTime.Seconds(), Generate: genTime.Seconds(), Total: time.Since(t0).Seconds()}
	if asJSON {
		return printJSON(os.Stdout, rep)
	}
	printRun(rep)
	return nil
}

// enableRunCache turns on the plan's token and neural caches over the
// prompts ids, pooled in as many groups as the plan has clusters, the
// weights chosen on the adapted per-position losses and hidden states
// already computed, and returns each prompt's score under the cache (its
// pool without itself: CacheHeldOut).
func enableRunCache(plan *adapt.Plan, ids [][]int32, adapted []model.SequenceScore, hid [][]float32, vocab int) ([]model.SequenceScore, error) {
	lp := make([][]float32, len(ids))
	for i := range adapted {
		lp[i] = adapted[i].Losses
	}
	k := max(plan.K, 1)
	if err := plan.EnableCacheScored(ids, lp, hid, adapt.UniformCache(vocab), (len(ids)+k-1)/k); err != nil {
		return nil, err
	}
	nll, err := plan.CacheHeldOut()
	if err != nil {
		return nil, err
	}
	out := make([]model.SequenceScore, len(ids))
	for i := range out {
		out[i] = model.SequenceScore{NLL: nll[i], Tokens: adapted[i].Tokens}
	}
	return out, nil
}

// runReportOf is the run report's clusters, prompts and pools from the
// plan, the scores (base, adapted, adapted with the token cache) and the
// continuations (the same three).
func runReportOf(s *session, meta adapt.Meta, plan *adapt.Plan, samples []sample, scores [3][]model.SequenceScore, gens [3][]model.Generation) runReport {
	m := s.m
	pool := func(ps []int) runPool { // 1-based prompts
		var sum [3]model.SequenceScore
		for _, p := range ps {
			for j := range sum {
				sum[j].NLL, sum[j].Tokens = sum[j].NLL+scores[j][p-1].NLL, sum[j].Tokens+scores[j][p-1].Tokens
			}
		}
		return runPool{Tokens: sum[0].Tokens, BasePerplexity: sum[0].Perplexity(), AdaptedPerplexity: sum[1].Perplexity(),
			CachedPerplexity: sum[2].Perplexity()}
	}
	rep := runReport{Device: s.label, Adapter: describeAdapter(meta), Static: meta.Kind != adapt.KindHyper,
		K: plan.K, Gated: []int{},
		Model: modelSummary{m.Cfg.NLayer, m.Cfg.NEmbd, m.Cfg.VocabSize, m.Cfg.NCtx, m.Cfg.Params()}}
	for c, ms := range clusterMembers(plan.Cluster, plan.K) {
		if len(ms) == 0 {
			continue
		}
		doms := make([]string, len(ms))
		for i, p := range ms {
			doms[i] = samples[p-1].domain
		}
		rep.Clusters = append(rep.Clusters, runCluster{Cluster: c, Prompts: ms, Domains: doms, runPool: pool(ms)})
	}
	every := make([]int, len(samples))
	for i, sm := range samples {
		every[i] = i + 1
		if plan.Cluster[i] < 0 {
			rep.Gated = append(rep.Gated, i+1)
		}
		g, w, _ := plan.CacheWeightsOf(i)
		if g >= len(rep.CachePools) {
			rep.CachePools = append(rep.CachePools, make([]runCachePool, g+1-len(rep.CachePools))...)
		}
		cp := &rep.CachePools[g]
		cp.Pool, cp.Prompts, cp.Own, cp.PoolWeight = g, append(cp.Prompts, i+1), w.Own, w.Pool
		cp.NeuralOwn, cp.NeuralPool, cp.Theta = w.NeuralOwn, w.NeuralPool, w.Theta
		rep.Prompts = append(rep.Prompts, runPrompt{Index: i + 1, Domain: sm.domain, Text: sm.text, Cluster: plan.Cluster[i],
			CachePool: g, runPool: pool([]int{i + 1}), BaseContinuation: string(gens[0][i].Text),
			AdaptedContinuation: string(gens[1][i].Text), CachedContinuation: string(gens[2][i].Text)})
	}
	rep.All = pool(every) // every prompt, those the gate kept at the base model too
	return rep
}

// printRun prints a run report as text.
func printRun(rep runReport) {
	ms := func(s float64) time.Duration {
		return (time.Duration(s * float64(time.Second))).Round(time.Millisecond)
	}
	fmt.Printf("Chameleon: batch-aware low-rank adaptation (ChamaleonLLM) on %s\n", rep.Device)
	md := rep.Model
	fmt.Printf("model: %d layers, width %d, vocabulary %d, context %d (%d parameters)\n", md.Layers, md.Width, md.Vocab, md.Context, md.Params)
	fmt.Printf("adapter: %s\n", rep.Adapter)
	fmt.Printf("%d prompts; ", len(rep.Prompts))
	if !rep.Static {
		fmt.Printf("%d clusters (%s mode), features + clustering + hyper-network in %s\n\n", rep.K, rep.Mode, ms(rep.Seconds.Plan))
	} else {
		fmt.Printf("a static adapter: one update for every prompt\n\n")
	}

	fmt.Println("Clusters found (the domain labels are shown, never used):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  cluster\tprompts\tdomains")
	for _, c := range rep.Clusters {
		fmt.Fprintf(tw, "  %d\t%s\t%s\n", c.Cluster, joinInts(c.Prompts), strings.Join(c.Domains, ", "))
	}
	tw.Flush()
	if len(rep.Gated) > 0 {
		fmt.Printf("  kept at the base model by the adapter's gate or self-check (cluster -1): %s\n", joinInts(rep.Gated))
	}

	fmt.Println("\nCache pools (the prompts grouped by k-means on their features). Mixed into the adapted model's next-token")
	fmt.Println("distribution: the token counts of each prompt's own text so far (own) and of its pool's other prompts")
	fmt.Println("(pool), and a neural cache: the tokens that followed the positions, own and pool's, whose final hidden")
	fmt.Println("states are nearest the query's (sharpness theta). The weights are chosen per pool on its own prompts,")
	fmt.Println("so the +cache scores below are in-sample for the weights:")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  pool\tprompts\town\tpool\tneural own\tneural pool\ttheta")
	for _, c := range rep.CachePools {
		fmt.Fprintf(tw, "  %d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%g\n", c.Pool, joinInts(c.Prompts), c.Own, c.PoolWeight, c.NeuralOwn, c.NeuralPool, c.Theta)
	}
	tw.Flush()

	fmt.Println("\nPerplexity of each prompt's own text (lower is better; changes against base; +cache: adapted with the")
	fmt.Println("token and neural caches, each prompt's pools without the prompt itself):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  #\tdomain\tcluster\ttokens\tbase\tadapted\tchange\t+cache\tchange\t")
	for _, p := range rep.Prompts {
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%d\t%s\t\n", p.Index, p.Domain, p.Cluster, p.Tokens, pplColumns(p.runPool))
	}
	tw.Flush()
	fmt.Println("\nPer cluster (pooled over its prompts' tokens):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  cluster\tprompts\ttokens\tbase\tadapted\tchange\t+cache\tchange\t")
	for _, c := range rep.Clusters {
		fmt.Fprintf(tw, "  %d\t%d\t%d\t%s\t\n", c.Cluster, len(c.Prompts), c.Tokens, pplColumns(c.runPool))
	}
	fmt.Fprintf(tw, "  all\t%d\t%d\t%s\t\n", len(rep.Prompts), rep.All.Tokens, pplColumns(rep.All))
	tw.Flush()

	fmt.Printf("\nGreedy continuations (%d tokens; all prompts in one batch, each with its own cluster's update):\n", rep.MaxTokens)
	for _, p := range rep.Prompts {
		fmt.Printf("\n[%d] %s, cluster %d: %s\n", p.Index, p.Domain, p.Cluster, oneLine(tail(p.Text, 60)))
		fmt.Printf("    base:    %s\n", oneLine(p.BaseContinuation))
		fmt.Printf("    adapted: %s\n", oneLine(p.AdaptedContinuation))
		fmt.Printf("    +cache:  %s\n", oneLine(p.CachedContinuation))
	}
	t := rep.Seconds
	fmt.Printf("\nload %s, plan %s, scoring %s (base) + %s (adapted), cache %s, generation %s; total %s\n", ms(t.Load), ms(t.Plan),
		ms(t.ScoreBase), ms(t.ScoreAdapted), ms(t.Cache), ms(t.Generate), ms(t.Total))
}

// pplColumns are a pool's perplexity columns: base, adapted, change,
// with the cache, change (tab-separated; changes against base).
func pplColumns(p runPool) string {
	return fmt.Sprintf("%.2f\t%.2f\t%s\t%.2f\t%s", p.BasePerplexity, p.AdaptedPerplexity, change(p.BasePerplexity, p.AdaptedPerplexity),
		p.CachedPerplexity, change(p.BasePerplexity, p.CachedPerplexity))
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
