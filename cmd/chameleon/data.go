package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/data"
)

// dataCmd is `chameleon data`: build the multi-domain corpus from the
// fetched sources, and print a built corpus's manifest.
func dataCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "data",
		Short: "Build and inspect the multi-domain training corpus (sources from scripts/fetch_corpus_sources.sh)",
	}
	c.AddCommand(dataBuildCmd(), dataStatsCmd(), dataVocabCmd())
	return c
}

func dataBuildCmd() *cobra.Command {
	var o data.Options
	var domains string
	var maxTrainMB, adaptTrainMB float64
	c := &cobra.Command{
		Use:   "build",
		Short: "Build the corpus: cleaned, de-duplicated, split by document (pretrain 90/5/5, adapt and heldout 70/15/15), capped per domain, near-duplicates of train removed from validation and test; JSONL + manifest.json",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			if domains != "" {
				o.Domains = strings.Split(domains, ",")
			}
			o.MaxTrainBytes = int64(maxTrainMB * (1 << 20))
			if maxTrainMB < 0 {
				o.MaxTrainBytes = -1
			}
			o.AdaptMaxTrainBytes = int64(adaptTrainMB * (1 << 20))
			if adaptTrainMB < 0 {
				o.AdaptMaxTrainBytes = -1
			}
			o.Progress = cmd.ErrOrStderr()
			t0 := time.Now()
			m, err := data.Build(o)
			if err != nil {
				return err
			}
			var docs, tok int64
			for _, f := range m.Files {
				docs += int64(f.Documents)
				tok += f.Tokens
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "data: wrote %d documents, %d GPT-2 tokens to %s in %.1fs\n", docs, tok, o.Out, time.Since(t0).Seconds())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Src, "src", ".cache/corpus-src", "cache dir filled by scripts/fetch_corpus_sources.sh ('make data')")
	f.StringVar(&o.Out, "out", ".cache/corpus", "output dir")
	f.StringVar(&o.GOROOT, "goroot", "", "Go root for the code domain (default: 'go env GOROOT')")
	f.StringVar(&o.ManDir, "man-dir", "", "also use the man pages under this root (man1..man8), e.g. /usr/share/man; the corpus then depends on the machine")
	f.StringVar(&domains, "domains", "", "comma-separated subset of "+strings.Join(data.AllDomains, ","))
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the split and order hashes")
	f.Float64Var(&maxTrainMB, "max-train-mb", 8, "cap on each pretraining domain's train text in MiB (validation and test get 5/90 of it each); negative: no cap")
	f.Float64Var(&adaptTrainMB, "adapt-train-mb", 2, "cap on each adapt and heldout domain's train text in MiB (validation and test get 15/70 of it each); negative: no cap")
	f.Float64Var(&o.CrossSplitShared, "near-dup", 0.2, "remove a validation/test document when at least this fraction of its 64-byte shingles is in train (or, for test, validation); above 1: off")
	f.IntVar(&o.MinDocChars, "min-doc-chars", 16, "drop documents with fewer non-space characters")
	f.IntVar(&o.MaxDocBytes, "max-doc-bytes", 64<<10, "cut longer documents into chunks (kept in one split)")
	f.IntVar(&o.Workers, "workers", 0, "parallel loaders and tokenizers (default: GOMAXPROCS)")
	return c
}

func dataStatsCmd() *cobra.Command {
	var dir string
	var verify, asJSON bool
	c := &cobra.Command{
		Use:   "stats",
		Short: "Print a built corpus's manifest as a table",
		RunE: func(cmd *cobra.Command, args []string) error {
			corpus, err := data.Open(dir)
			if err != nil {
				return err
			}
			m := corpus.Manifest()
			stdout := cmd.OutOrStdout()
			if asJSON {
				if verify {
					if err := corpus.Verify(); err != nil {
						return err
					}
				}
				return printJSON(stdout, m)
			}
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "domain\trole\tsplit\tdocs\ttext MB\ttokens\tbytes/token\tsha256\t")
			var docs, tok, bytes int64
			for _, f := range m.Files {
				bpt := 0.0
				if f.Tokens > 0 {
					bpt = float64(f.TextBytes) / float64(f.Tokens)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%.2f\t%d\t%.2f\t%.12s\t\n", f.Domain, corpus.Role(f.Domain), f.Split, f.Documents, float64(f.TextBytes)/1e6, f.Tokens, bpt, f.SHA256)
				docs += int64(f.Documents)
				tok += f.Tokens
				bytes += f.TextBytes
			}
			fmt.Fprintf(w, "total\t\t\t%d\t%.2f\t%d\t\t\t\n", docs, float64(bytes)/1e6, tok)
			w.Flush()
			fmt.Fprintln(stdout)
			w = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "domain\trole\tcandidates\tkept\tempty\tduplicate\tnear-dup\tover cap\tval near-dup docs\tval near-dup MB\tval shared\ttest near-dup docs\ttest near-dup MB\ttest shared")
			for _, d := range m.Domains {
				cs := map[string]data.SplitDedupe{}
				for _, x := range d.CrossSplit {
					cs[x.Split] = x
				}
				v, t := cs[data.SplitValidation], cs[data.SplitTest]
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.2f%%\t%d\t%.3f\t%.2f%%\n", d.Domain, corpus.Role(d.Domain), d.Candidates, d.Kept, d.Empty, d.Duplicates, d.NearDups, d.Capped,
					v.Removed, float64(v.RemovedBytes)/1e6, 100*v.SharedTrain, t.Removed, float64(t.RemovedBytes)/1e6, 100*t.SharedTrain)
			}
			w.Flush()
			fmt.Fprintln(stdout)
			for _, s := range m.Sources {
				fmt.Fprintf(stdout, "source %-9s %s %s (licence: %s)\n", s.Domain, s.Source, s.Version, s.License)
			}
			p := m.Params
			fmt.Fprintf(stdout, "params: seed %d, max train %d bytes, split %d/%d/%d, min %d chars, chunks <= %d bytes; %s\n",
				p.Seed, p.MaxTrainBytes, 100-p.ValidationPercent-p.TestPercent, p.ValidationPercent, p.TestPercent, p.MinDocChars, p.MaxDocBytes, p.Tokenizer)
			if p.ShingleBytes > 0 {
				fmt.Fprintf(stdout, "params: adapt/heldout: max train %d bytes, split %d/%d/%d; near-duplicates: %d-byte shingles, 1 in %d sampled, removed from validation/test at >= %.0f%% shared with train, dropped within adapt/heldout domains at >= %.0f%%\n",
					p.AdaptMaxTrainBytes, 100-p.AdaptValidationPercent-p.AdaptTestPercent, p.AdaptValidationPercent, p.AdaptTestPercent, p.ShingleBytes, p.ShingleSample, 100*p.CrossSplitShared, 100*p.WithinDomainShared)
			}
			for _, role := range data.Roles {
				fmt.Fprintf(stdout, "role %-8s %s\n", role, strings.Join(corpus.DomainsWithRole(role), " "))
			}
			if verify {
				if err := corpus.Verify(); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "verify: every file matches its size and SHA-256")
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "corpus", ".cache/corpus", "corpus dir (written by 'chameleon data build')")
	c.Flags().BoolVar(&verify, "verify", false, "also check every file's SHA-256 against the manifest")
	c.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON (data/manifest.go's Manifest; docs/cli-json.md)")
	return c
}
