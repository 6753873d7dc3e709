package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
)

// adaptCacheCmd evaluates the token cache (adapt.CacheWeights) on the
// benchmark's windows through the inference path (adaptrun.EvalCache).
func adaptCacheCmd() *cobra.Command {
	var o cacheCmdOpts
	c := &cobra.Command{
		Use:   "cache --windows FILE --out DIR",
		Short: "Evaluate the token cache: each cluster of a batch mixes its members' own tokens and its prompts into the output, with weights chosen on its prompts",
		Long: `Scores the windows' validation, test and harm splits through the inference
path with and without the adapter's plan (as adapt score does), then scores
them again with the token cache: p' = (1-own-pool) p + own q_own + pool q_pool,
where q_own counts the window's own tokens so far and q_pool the prompts of
its cluster (k-means on the plan's prompt features, batches of --batch), the
two weights chosen per cluster on its members' prompts (leave-one-out) and the
prior's weight on validation. Rows: the adapter alone, the per-sequence cache,
the cluster cache, two controls (random batches, another cluster's pool) and
the adapter with the cluster cache, and the server's cache memory (chameleon
serve --cache) replayed over each stream in a random arrival order (seeded as
the k-means), on each split and on both in one stream, with paired bootstrap
intervals. The neural cache's rows (keys: the served forward's final hidden
states, own positions and the cluster's prompts; with its controls) and the
server's memory with the neural cache replayed the same way follow. Writes
cache.md, cache.json.gz and cache.png.

To compare two adapters window by window: run one with --per-window (and
--adapted-only, which skips the rows without the adapter: the base model's,
the same for both), then the other with --versus the first's cache.json.gz;
its report adds, for every row in both, this run minus that one with a paired
interval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			return o.run()
		},
	}
	o.mf.add(c)
	fl := c.Flags()
	fl.StringVar(&o.adapterSpec, "adapter", "default", "adapter file, or default (the embedded hyper-network); its plan gives the features the clusters come from")
	fl.StringVar(&o.windowsIn, "windows", "", "windows file (adapt bench --save-windows)")
	fl.StringVar(&o.out, "out", "", "directory for cache.md, cache.json.gz and cache.png")
	fl.IntVar(&o.batch, "batch", 16, "windows a batch (a plan, and a cluster's pool)")
	fl.IntVar(&o.iters, "bootstrap", 1000, "bootstrap resamples of each interval")
	fl.IntVar(&o.seeds, "seeds", 3, "k-means (and random-batch) seeds: the tables are the first's, the others' figures beside them")
	fl.BoolVar(&o.ro.adaptedOnly, "adapted-only", false, "score only the rows with the adapter (for comparing adapters: the others are the base model's)")
	fl.BoolVar(&o.ro.perWindow, "per-window", false, "keep every row's per-window losses in cache.json.gz (what --versus compares)")
	fl.StringVar(&o.fromJSON, "from-json", "", "redraw a run's cache.json.gz into --out instead of scoring (with --versus: compare it with another run)")
	addTuneFlags(c, &o.tune)
	fl.StringVar(&o.versus, "versus", "", "another run's cache.json.gz (written with --per-window, same windows): add this run minus that one, row by row, paired over windows")
	return c
}

// redrawCache writes the report of the run saved in fromJSON into out,
// compared with other (named versus) when it is set.
func redrawCache(fromJSON string, other *adaptrun.CacheResult, versus, out string, iters int) error {
	if out == "" {
		return fmt.Errorf("--out is required")
	}
	res, err := adaptrun.LoadCacheResult(fromJSON)
	if err != nil {
		return err
	}
	if other != nil {
		if err := res.Versus(other, versus, iters); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return writeCacheReport(res, out)
}

// cacheRunOpts are adapt cache's switches for comparing adapters.
type cacheRunOpts struct {
	adaptedOnly, perWindow bool
}

// cacheCmdOpts are adapt cache's flags.
type cacheCmdOpts struct {
	mf                                            modelFlags
	adapterSpec, windowsIn, out, versus, fromJSON string
	batch, iters, seeds                           int
	ro                                            cacheRunOpts
	tune                                          adapt.Tune // the plans' test-time tuning (a gated basis)
}

// run is adapt cache: score the splits through the adapter's plan, then
// evaluate the caches over them (or redraw a saved run), and write the
// report.
func (o *cacheCmdOpts) run() (err error) {
	var other *adaptrun.CacheResult
	if o.versus != "" { // read first: a wrong file fails before the scoring
		if other, err = adaptrun.LoadCacheResult(o.versus); err != nil {
			return err
		}
		o.ro.perWindow = true
	}
	if o.fromJSON != "" {
		return redrawCache(o.fromJSON, other, o.versus, o.out, o.iters)
	}
	if err := o.tune.Check(); err != nil {
		return fmt.Errorf("--tune-steps/--tune-lr: %w", err)
	}
	if o.windowsIn == "" || o.out == "" {
		return fmt.Errorf("--windows (adapt bench --save-windows) and --out are required")
	}
	w, err := adaptrun.LoadWindows(o.windowsIn)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	s, a, err := o.mf.loadWithAdapter(o.adapterSpec)
	if err != nil {
		return err
	}
	defer s.close()
	// The windows' vocabulary is the model's before the prior's
	// vocabulary-sized table is made.
	if w.Vocab != s.m.Cfg.VocabSize {
		return fmt.Errorf("--windows %s: made with a vocabulary of %d tokens, the model has %d", o.windowsIn, w.Vocab, s.m.Cfg.VocabSize)
	}
	prior, err := cachePrior(w)
	if err != nil {
		return err
	}
	sv := map[string]*adaptrun.Served{}
	for _, split := range []string{"validation", "test", "harm"} {
		if split == "harm" && len(w.Splits[split]) == 0 {
			fmt.Fprintln(os.Stderr, "adapt cache: the windows have no harm split (pretraining and held-out domains): scoring the adaptation domains only")
			continue
		}
		if sv[split], err = scoreServedWithBar(s, a, w, split, adaptrun.ServedOpts{Batch: o.batch, Tune: o.tune, Hidden: true}); err != nil {
			return err
		}
	}
	res, err := evalCacheSeeds(sv, w, prior, o.batch, o.iters, o.seeds, replayMemoryConfig(a), o.ro)
	if err != nil {
		return err
	}
	if other != nil {
		if err := res.Versus(other, o.versus, o.iters); err != nil {
			return err
		}
	}
	return writeCacheReport(res, o.out)
}

// evalCacheSeeds runs adaptrun.EvalCache on the scored splits sv under
// each k-means (and random-batch) seed 1 .. seeds, a bar per seed, the
// first seed's result with the others' figures added.
func evalCacheSeeds(sv map[string]*adaptrun.Served, w *adaptrun.Windows, prior []float64, batch, iters, seeds int,
	mem adapt.MemoryConfig, ro cacheRunOpts) (*adaptrun.CacheResult, error) {
	var res *adaptrun.CacheResult
	for seed := 1; seed <= max(seeds, 1); seed++ {
		desc := fmt.Sprintf("cache rows, seed %d of %d", seed, max(seeds, 1))
		bar, plain := newBar(desc, "rows"), logProgress(os.Stderr, 30*time.Second)
		r, err := adaptrun.EvalCache(sv["validation"], sv["test"], sv["harm"], w.Roles, w.Order,
			adaptrun.CacheOpts{Prior: prior, Betas: []float64{0.5, 1, 4}, Batch: batch, Seed: uint64(seed), Bootstrap: iters, Memory: mem,
				AdaptedOnly: ro.adaptedOnly, KeepScores: ro.perWindow,
				Progress: func(done, total int, stream string) {
					bar.ChangeMax(total)
					_ = bar.Set(done)
					plain(done, total, desc+" ("+stream+")")
				}})
		_ = bar.Finish()
		if err != nil {
			return nil, err
		}
		if res == nil {
			res = r
		} else {
			res.AddSeed(r)
		}
	}
	return res, nil
}

// loadWithAdapter loads the model and the adapter spec names (as
// loadAdapter reads it) and says which adapter on stderr.
func (f *modelFlags) loadWithAdapter(spec string) (*session, *adapt.Adapter, error) {
	s, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	a, err := loadAdapter(spec, s.m)
	if err != nil {
		s.close()
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "adapter: %s\n", describeAdapter(a.Meta))
	return s, a, nil
}

// loadWindowsAdapter reads the windows file, then the model and the adapter
// for it (loadWithAdapter); the caller closes the session.
func (f *modelFlags) loadWindowsAdapter(windows, spec string) (*adaptrun.Windows, *session, *adapt.Adapter, error) {
	w, err := adaptrun.LoadWindows(windows)
	if err != nil {
		return nil, nil, nil, err
	}
	s, a, err := f.loadWithAdapter(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	return w, s, a, nil
}

// writeCacheReport prints the cache's tables and writes them with the JSON
// and the plot into out.
func writeCacheReport(res *adaptrun.CacheResult, out string) error {
	res.Markdown(os.Stdout)
	return writeReportFiles(res, out, "cache", ".json.gz")
}

// report is a result that writes itself as markdown, JSON and a PNG.
type report interface {
	Markdown(w io.Writer)
	WriteJSON(path string) error
	WritePNG(path string) error
}

// writeReportFiles writes r into dir as name.md, name+jsonExt and
// name.png.
func writeReportFiles(r report, dir, name, jsonExt string) error {
	f, err := os.Create(filepath.Join(dir, name+".md"))
	if err != nil {
		return err
	}
	r.Markdown(f)
	if err := f.Close(); err != nil {
		return err
	}
	if err := r.WriteJSON(filepath.Join(dir, name+jsonExt)); err != nil {
		return err
	}
	return r.WritePNG(filepath.Join(dir, name+".png"))
}

// cachePrior is the cache's prior: the unigram of the pretraining domains'
// training windows (the fit split), or uniform when the windows have none.
func cachePrior(w *adaptrun.Windows) ([]float64, error) {
	var fit []int32
	for _, x := range w.Splits["fit"] {
		fit = append(fit, x.Tokens...)
	}
	if len(fit) == 0 {
		fmt.Fprintln(os.Stderr, "adapt cache: the windows have no fit split (pretraining domains' training windows): the prior is uniform")
		u := make([]float64, w.Vocab)
		for i := range u {
			u[i] = 1 / float64(w.Vocab)
		}
		return u, nil
	}
	return adapt.UnigramPrior(fit, w.Vocab)
}

// scoreServedWithBar scores one split of w through the inference path
// (adaptrun.ScoreServed; o.Hidden keeps the hidden states the neural cache
// reads) with a progress bar; o.Prompt is the windows'.
func scoreServedWithBar(s *session, a *adapt.Adapter, w *adaptrun.Windows, split string, o adaptrun.ServedOpts) (*adaptrun.Served, error) {
	ws := w.Splits[split]
	if len(ws) == 0 {
		return nil, fmt.Errorf("the windows file has no %q split", split)
	}
	bar := newBar("scoring "+split, "windows")
	plain := logProgress(os.Stderr, 30*time.Second)
	o.Prompt = w.Prompt
	sv, err := adaptrun.ScoreServed(s.m, a, split, ws, o, func(done, total int) {
		bar.ChangeMax(total)
		_ = bar.Set(done)
		plain(done, total, "scoring "+split)
	})
	_ = bar.Finish()
	return sv, err
}

// replayMemoryConfig is the served memory's config for the replay: run-time
// clusters within the gate's radius, as chameleon serve --cache joins them.
func replayMemoryConfig(a *adapt.Adapter) adapt.MemoryConfig {
	var mem adapt.MemoryConfig
	mem.Radius = a.Meta.MemoryRadius()
	return mem
}
