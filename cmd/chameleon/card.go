package main

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/data"
)

// cardRow is one domain's line of the model card.
type cardRow struct {
	Domain      string  `json:"domain"`
	Tokens      int     `json:"tokens"`
	Bytes       int     `json:"bytes"`
	Perplexity  float64 `json:"perplexity"`
	Unigram     float64 `json:"unigram_perplexity"`
	BitsPerByte float64 `json:"bits_per_byte"`
}

func cardCmd() *cobra.Command {
	var mf modelFlags
	var corpus, split, roles string
	var maxTokens int
	var asJSON bool
	c := &cobra.Command{
		Use:   "card --corpus DIR",
		Short: "Model card figures: per-domain perplexity on a corpus split next to a unigram baseline fitted on the train split",
		Long: `Score each domain's split (its documents joined by <|endoftext|>, the first
--max-tokens tokens) with the model (sliding windows of the full context moved
by half of it) and with a unigram model of the same tokenizer fitted on the
corpus's train split of the pretraining domains (add-one smoothing), and
print per-domain perplexity, the unigram's, and the model's bits per byte of
text. --roles picks the domains scored (default: the pretraining ones).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			defer recovered(&err)
			if maxTokens < 2 { // perplexity scores the tokens after the first
				return fmt.Errorf("--max-tokens %d: want at least 2", maxTokens)
			}
			s, err := mf.load()
			if err != nil {
				return err
			}
			defer s.close()
			cp, err := data.Open(corpus)
			if err != nil {
				return err
			}
			uni, err := data.FitUnigram(cp, s.tok, s.m.Cfg.VocabSize)
			if err != nil {
				return err
			}
			var rows []cardRow
			ctx := s.m.Cfg.NCtx
			var scored []string
			for _, r := range strings.Split(roles, ",") {
				scored = append(scored, cp.DomainsWithRole(strings.TrimSpace(r))...)
			}
			if len(scored) == 0 {
				return fmt.Errorf("no domain of role(s) %q in %s", roles, corpus)
			}
			for _, dom := range scored {
				stream, nbytes, err := cp.Stream(s.tok, dom, split, maxTokens)
				if err != nil {
					return err
				}
				bar := newProgress("perplexity "+dom, "windows")
				res, err := s.m.Perplexity(stream, ctx, ctx/2, 16, bar.Set)
				bar.Finish()
				if err != nil {
					return err
				}
				up, err := uni.Perplexity(stream[1:]) // the tokens the model predicts
				if err != nil {
					return err
				}
				rows = append(rows, cardRow{Domain: dom, Tokens: res.Tokens, Bytes: nbytes, Perplexity: res.Perplexity,
					Unigram: up, BitsPerByte: res.NLL / math.Ln2 / float64(nbytes)})
			}
			if asJSON {
				return printJSON(os.Stdout, rows)
			}
			fmt.Printf("| domain | %s tokens scored | perplexity | unigram perplexity | bits/byte |\n|---|---|---|---|---|\n", split)
			for _, r := range rows {
				fmt.Printf("| %s | %d | %.2f | %.2f | %.3f |\n", r.Domain, r.Tokens, r.Perplexity, r.Unigram, r.BitsPerByte)
			}
			return nil
		},
	}
	mf.add(c)
	f := c.Flags()
	f.StringVar(&corpus, "corpus", ".cache/corpus", "built corpus dir (make data)")
	f.StringVar(&split, "split", "validation", "split to score")
	f.IntVar(&maxTokens, "max-tokens", 32768, "tokens scored per domain at most")
	f.StringVar(&roles, "roles", data.RolePretrain, "comma-separated roles of the domains to score: pretrain, adapt, heldout")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
