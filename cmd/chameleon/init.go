package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

func initCmd() *cobra.Command {
	var name, out, dtype string
	var seed uint64
	c := &cobra.Command{
		Use:   "init --config gpt2|gpt2-medium|tiny --out DIR",
		Short: "Write a GPT-2-architecture model with random weights (GPT-2's initialisation), for tests and benchmarks",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ok := model.Configs[name]
			if !ok {
				var names []string
				for n := range model.Configs {
					names = append(names, n)
				}
				sort.Strings(names)
				return fmt.Errorf("--config %q: want one of %s", name, strings.Join(names, ", "))
			}
			if err := checkModelOut(out); err != nil {
				return err
			}
			tok, err := tokenizer.NewGPT2()
			if err != nil {
				return err
			}
			if err := saveModel(out, cfg, model.RandomInit(cfg, seed), dtype, tok); err != nil {
				return err
			}
			fmt.Printf("wrote %s: %s config, %d parameters, %s weights, seed %d\n", filepath.Clean(out), name, cfg.Params(), dtype, seed)
			return nil
		},
	}
	c.Flags().StringVar(&name, "config", "tiny", "architecture: gpt2, gpt2-medium or tiny")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed")
	c.Flags().StringVar(&out, "out", "", "output directory (Hugging Face layout) or .gguf file")
	c.Flags().StringVar(&dtype, "dtype", "f32", "stored dtype: f32, f16 or bf16")
	return c
}

// inspectReport is what `chameleon inspect --json` prints.
type inspectReport struct {
	Path      string          `json:"path"`
	Vocab     int             `json:"vocab"`
	Context   int             `json:"context"`
	Width     int             `json:"width"`
	Heads     int             `json:"heads"`
	Layers    int             `json:"layers"`
	LNEps     float64         `json:"layernorm_eps"`
	Params    int             `json:"params"`
	Tensors   []inspectTensor `json:"tensors"`
	ChatTempl *string         `json:"chat_template"` // the model's Jinja chat template; null when it has none
}

type inspectTensor struct {
	Name  string  `json:"name"`
	Shape []int   `json:"shape"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

func inspectCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Show a checkpoint's configuration, parameter count and tensors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, host, err := model.Load(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				rep := inspectReport{Path: args[0], Vocab: cfg.VocabSize, Context: cfg.NCtx, Width: cfg.NEmbd, Heads: cfg.NHead,
					Layers: cfg.NLayer, LNEps: float64(cfg.LNEps), Params: cfg.Params()}
				for _, t := range host {
					mn, mx, mean := tensorStats(t.Data)
					rep.Tensors = append(rep.Tensors, inspectTensor{t.Name, t.Shape, mean, mn, mx})
				}
				cs, ok, err := modelChatTemplate(args[0])
				if err != nil {
					return err
				}
				if ok {
					rep.ChatTempl = &cs.src
				}
				return printJSON(os.Stdout, rep)
			}
			fmt.Printf("%s\n  vocab %d, context %d, width %d, heads %d, layers %d, layernorm eps %g\n  %d parameters (%.1f M)\n",
				args[0], cfg.VocabSize, cfg.NCtx, cfg.NEmbd, cfg.NHead, cfg.NLayer, cfg.LNEps, cfg.Params(), float64(cfg.Params())/1e6)
			for _, t := range model.Dequantize(host) { // quantized matrices: the values their blocks decode to
				mn, mx, mean := tensorStats(t.Data)
				fmt.Printf("  %-28s %-14s mean %+.4f  min %+.4f  max %+.4f\n", t.Name, fmt.Sprint(t.Shape), mean, mn, mx)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (docs/cli-json.md)")
	return c
}

// tensorStats is the minimum, maximum and mean of x (0s when empty).
func tensorStats(x []float32) (mn, mx, mean float64) {
	var sum float64
	for i, v := range x {
		f := float64(v)
		if i == 0 || f < mn {
			mn = f
		}
		if i == 0 || f > mx {
			mx = f
		}
		sum += f
	}
	return mn, mx, sum / float64(max(len(x), 1))
}

func convertCmd() *cobra.Command {
	var in, out, dtype string
	c := &cobra.Command{
		Use:   "convert [--model IN] --out OUT",
		Short: "Convert between the Hugging Face layout (directory) and GGUF (.gguf file), tokenizer included; without --model, the embedded default model",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkModelOut(out); err != nil {
				return err
			}
			if err := checkNotInput(in, out); err != nil {
				return err
			}
			cfg, host, tok, err := (&modelFlags{path: in}).read()
			if err != nil {
				return err
			}
			cs, hasChat, err := modelChatTemplate(in)
			if err != nil {
				return err
			}
			if err := saveModelChat(out, cfg, host, dtype, tok, cs.src); err != nil {
				return err
			}
			if hasChat {
				fmt.Printf("carried the chat template from %s\n", cs.origin)
			}
			src := in
			if src == "" {
				src = "the default model"
			}
			fmt.Printf("wrote %s (%s) from %s, with its %d-token tokenizer\n", out, dtype, src, tok.VocabSize())
			return nil
		},
	}
	c.Flags().StringVar(&in, "model", "", "input model: a directory, .safetensors or .gguf file (default: the embedded default model)")
	c.Flags().StringVar(&out, "out", "", "output: a directory (safetensors) or a .gguf file")
	c.Flags().StringVar(&dtype, "dtype", "f32", "stored dtype: f32, f16 or bf16")
	return c
}

// saveModel writes GGUF for a .gguf path (tok in its metadata, and the tied
// output projection also as output.weight, as llama.cpp's converter writes
// it), else a Hugging Face directory with tok's encoder.json and vocab.bpe
// beside the weights (the project's model format: safetensors + config.json
// + tokenizer files).
func saveModel(out string, cfg model.Config, host []model.HostTensor, dtype string, tok *tokenizer.Tokenizer) error {
	return saveModelChat(out, cfg, host, dtype, tok, "")
}

// ggufOptions are the options a GGUF checkpoint of the project is written
// with: the tokenizer (unless the embedding is padded past it), the tied
// output copy llama.cpp's converter writes, and chat's template if any.
func ggufOptions(cfg model.Config, tok *tokenizer.Tokenizer, chat string) model.GGUFOptions {
	opt := model.GGUFOptions{Tokenizer: tok, TiedOutput: true, ChatTemplate: chat}
	if tok.VocabSize() != cfg.VocabSize {
		// A padded embedding: the file cannot list a token per row.
		fmt.Fprintf(os.Stderr, "chameleon: the tokenizer has %d tokens for %d embedding rows; writing the GGUF without it\n",
			tok.VocabSize(), cfg.VocabSize)
		opt.Tokenizer = nil
	}
	return opt
}

// saveModelChat is saveModel that also stores a chat template when chat is
// not "": GGUF's tokenizer.chat_template, or tokenizer_config.json's
// chat_template in a directory.
func saveModelChat(out string, cfg model.Config, host []model.HostTensor, dtype string, tok *tokenizer.Tokenizer, chat string) error {
	if isGGUFName(out) {
		return model.SaveGGUFWith(out, cfg, host, dtype, ggufOptions(cfg, tok, chat))
	}
	if err := model.SaveHF(out, cfg, model.Dequantize(host), dtype); err != nil {
		return err
	}
	if chat != "" {
		b, err := json.MarshalIndent(map[string]string{"chat_template": chat}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "tokenizer_config.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return tok.WriteFiles(out)
}
