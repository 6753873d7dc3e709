package main

import (
	"cmp"
	"fmt"
	"iter"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/data"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

func dataVocabCmd() *cobra.Command {
	var dir, out string
	var size, minCount int
	c := &cobra.Command{
		Use:   "vocab --corpus DIR --size N --out DIR",
		Short: "Learn a byte-level BPE vocabulary of N tokens on the corpus's train split (GPT-2's pre-tokenizer and file formats: encoder.json, vocab.bpe)",
		Long: `Learn a byte-level BPE vocabulary on the train split of every pretraining
domain (the adapt and heldout domains are not read), the
way GPT-2's was learned (GPT-2's pre-tokenizer, the 256 bytes first, then the
most frequent adjacent pair merged until the vocabulary has --size tokens with
<|endoftext|> last), and write it as GPT-2's encoder.json and vocab.bpe into
--out. The result is deterministic. It prints bytes per token on each
domain's validation split next to GPT-2's own vocabulary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if size < 257 {
				return fmt.Errorf("--size %d: want at least 257 (the 256 bytes and <|endoftext|>)", size)
			}
			c, err := data.Open(dir)
			if err != nil {
				return err
			}
			// readErr keeps the first error reading the corpus, which
			// would otherwise end the documents early without a word.
			var readErr error
			docs := func(split string, domains ...string) iter.Seq[string] {
				return func(yield func(string) bool) {
					for _, dom := range domains {
						for d, err := range c.All(dom, split) {
							if err != nil {
								readErr = cmp.Or(readErr, err)
								return
							}
							if !yield(d.Text) {
								return
							}
						}
					}
				}
			}
			t0 := time.Now()
			pretrain := c.DomainsWithRole(data.RolePretrain)
			tok, err := tokenizer.TrainBPE(docs("train", pretrain...), size, minCount)
			if err = cmp.Or(readErr, err); err != nil {
				return err
			}
			if err := tok.WriteFiles(out); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "learned %d tokens in %.1f s, written to %s\n", tok.VocabSize(), time.Since(t0).Seconds(), out)
			gpt2, err := tokenizer.NewGPT2()
			if err != nil {
				return err
			}
			fmt.Printf("| domain | validation bytes | bytes/token (%d) | bytes/token (GPT-2, 50257) |\n|---|---|---|---|\n", tok.VocabSize())
			for _, dom := range pretrain {
				var nb, nt, ng int
				for s := range docs("validation", dom) {
					nb += len(s)
					nt += len(tok.Encode(s))
					ng += len(gpt2.Encode(s))
				}
				fmt.Printf("| %s | %d | %.2f | %.2f |\n", dom, nb, float64(nb)/float64(max(nt, 1)), float64(nb)/float64(max(ng, 1)))
			}
			return readErr
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "corpus", ".cache/corpus", "corpus dir (written by 'chameleon data build')")
	f.StringVar(&out, "out", "", "output dir for encoder.json and vocab.bpe")
	f.IntVar(&size, "size", 4096, "vocabulary size, <|endoftext|> included")
	f.IntVar(&minCount, "min-count", 2, "never merge a pair seen fewer times")
	return c
}
