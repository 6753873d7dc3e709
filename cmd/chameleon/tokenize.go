package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/defaults"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// tokenizeReport is what `chameleon tokenize --json` prints: every input
// line with its text and ids (with --decode, the ids read and their text).
type tokenizeReport struct {
	Tokenizer string         `json:"tokenizer"` // where the vocabulary came from
	VocabSize int            `json:"vocab_size"`
	Lines     []tokenizeLine `json:"lines"`
}

type tokenizeLine struct {
	Text   string  `json:"text"`
	Tokens []int32 `json:"tokens"`
}

func tokenizeCmd() *cobra.Command {
	var decode, gpt2, asJSON bool
	var modelPath string
	c := &cobra.Command{
		Use:   "tokenize [TEXT...]",
		Short: "Print token ids, space-separated, one line per input line (stdin when no text is given); --decode reverses",
		Long: `Print the token ids of each input line with a model's tokenizer: by default the embedded
default model's (4,096 tokens), --model M's own (a GGUF file's, or encoder.json + vocab.bpe
beside the checkpoint, else GPT-2's, as every model command loads it), or GPT-2's 50,257-token
vocabulary with --gpt2.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if gpt2 && modelPath != "" {
				return fmt.Errorf("--gpt2 and --model: give one")
			}
			tok, from, err := modelTokenizer(modelPath, gpt2)
			if err != nil {
				return err
			}
			rep := tokenizeReport{Tokenizer: from, VocabSize: tok.VocabSize(), Lines: []tokenizeLine{}}
			out := bufio.NewWriter(os.Stdout)
			defer out.Flush()
			line := func(s string) error {
				if decode {
					var ids []int32
					for _, f := range strings.Fields(s) {
						v, err := strconv.ParseInt(f, 10, 32)
						if err != nil {
							return fmt.Errorf("--decode: %q is not a token id", f)
						}
						ids = append(ids, int32(v))
					}
					b, err := tok.DecodeChecked(ids)
					if err != nil {
						return err
					}
					if asJSON {
						rep.Lines = append(rep.Lines, tokenizeLine{Text: string(b), Tokens: append([]int32{}, ids...)})
						return nil
					}
					out.Write(b)
					out.WriteByte('\n')
					return nil
				}
				ids := tok.Encode(s)
				if asJSON {
					rep.Lines = append(rep.Lines, tokenizeLine{Text: s, Tokens: append([]int32{}, ids...)})
					return nil
				}
				for i, id := range ids {
					if i > 0 {
						out.WriteByte(' ')
					}
					out.WriteString(strconv.Itoa(int(id)))
				}
				out.WriteByte('\n')
				return nil
			}
			if err := eachLine(args, line); err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, rep)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&decode, "decode", false, "read token ids and print the text")
	c.Flags().StringVar(&modelPath, "model", "", "use this model's tokenizer: the one inside a .gguf file, else encoder.json + vocab.bpe beside it, else GPT-2's (default: the embedded default model's)")
	c.Flags().BoolVar(&gpt2, "gpt2", false, "use GPT-2's 50,257-token vocabulary")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object with every line's text and ids (docs/cli-json.md)")
	return c
}

// eachLine calls f with the arguments joined, or with each line of stdin.
func eachLine(args []string, f func(string) error) error {
	if len(args) > 0 {
		return f(strings.Join(args, " "))
	}
	r := bufio.NewReader(os.Stdin)
	for {
		s, err := r.ReadString('\n')
		if len(s) > 0 {
			if e := f(strings.TrimSuffix(s, "\n")); e != nil {
				return e
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// tokenizerFor is the tokenizer in (or beside) path, GPT-2's when path is
// "" (train's --tokenizer).
func tokenizerFor(path string) (*tokenizer.Tokenizer, error) {
	if path == "" {
		return tokenizer.NewGPT2()
	}
	return loadTokenizer(path)
}

// modelTokenizer is the tokenizer of the model at path (as model commands
// load it), of the embedded default model when path is "", or GPT-2's with
// gpt2; from says which. A path that is not a model is an error.
func modelTokenizer(path string, gpt2 bool) (tok *tokenizer.Tokenizer, from string, err error) {
	switch {
	case gpt2:
		tok, err = tokenizer.NewGPT2()
		return tok, "gpt2", err
	case path == "":
		fsys, err := defaults.Model()
		if errors.Is(err, defaults.ErrMissing) {
			return nil, "", fmt.Errorf("no --model given and %w: pass --model M or --gpt2", err)
		}
		if err != nil {
			return nil, "", err
		}
		tok, err = tokenizer.LoadFS(fsys)
		return tok, "default model", err
	}
	if err := checkModelPath(path); err != nil {
		return nil, "", err
	}
	tok, err = loadTokenizer(path)
	return tok, path, err
}

// checkModelPath refuses a --model that cannot be a checkpoint: missing, a
// directory without config.json, or a file that is neither GGUF nor a
// .safetensors with config.json beside it.
func checkModelPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	dir := path
	if !st.IsDir() {
		if isGGUF(path) {
			return nil
		}
		if !strings.EqualFold(filepath.Ext(path), ".safetensors") {
			return fmt.Errorf("--model %s: not a model (want a directory with config.json, a .safetensors file or a .gguf file)", path)
		}
		dir = filepath.Dir(path)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return fmt.Errorf("--model %s: not a model: no config.json in %s", path, dir)
	}
	return nil
}
