package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
)

func tokenizeCmd() *cobra.Command {
	var decode bool
	var modelPath string
	c := &cobra.Command{
		Use:   "tokenize [TEXT...]",
		Short: "Print GPT-2 token ids, space-separated, one line per input line (stdin when no text is given); --decode reverses",
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := tokenizerFor(modelPath)
			if err != nil {
				return err
			}
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
					out.Write(b)
					out.WriteByte('\n')
					return nil
				}
				ids := tok.Encode(s)
				for i, id := range ids {
					if i > 0 {
						out.WriteByte(' ')
					}
					out.WriteString(strconv.Itoa(int(id)))
				}
				out.WriteByte('\n')
				return nil
			}
			if len(args) > 0 {
				return line(strings.Join(args, " "))
			}
			r := bufio.NewReader(os.Stdin)
			for {
				s, err := r.ReadString('\n')
				if len(s) > 0 {
					if e := line(strings.TrimSuffix(s, "\n")); e != nil {
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
		},
	}
	c.Flags().BoolVar(&decode, "decode", false, "read token ids and print the text")
	c.Flags().StringVar(&modelPath, "model", "", "use this model's tokenizer: the one inside a .gguf file, or encoder.json + vocab.bpe beside it, if it has them")
	return c
}

func tokenizerFor(path string) (*model.Tokenizer, error) {
	if path == "" {
		return model.NewGPT2Tokenizer()
	}
	return loadTokenizer(path)
}
