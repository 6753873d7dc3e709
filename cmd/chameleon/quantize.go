package main

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// quantizeCmd writes a GGUF checkpoint whose layer matrices are ggml blocks
// of one type (model/quantize.go says which tensors stay float and why).
func quantizeCmd() *cobra.Command {
	var in, out, typ string
	c := &cobra.Command{
		Use:   "quantize --type q8_0|q4_0|q4_k [--model IN] --out OUT.gguf",
		Short: "Write a GGUF checkpoint with its layer matrices quantized (Q8_0, Q4_0 or Q4_K; embeddings f16, norms and biases f32), tokenizer included; without --model, the embedded default model",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			f, err := quant.Parse(typ)
			if err != nil {
				return err
			}
			if !isGGUFName(out) {
				return fmt.Errorf("--out %q: quantized checkpoints are GGUF files (name ending in .gguf)", out)
			}
			if err := checkOutDir("--out", out); err != nil {
				return err
			}
			if err := checkNotInput(in, out); err != nil {
				return err
			}
			// f16 weights stay halves, and each tensor is widened (a
			// quantized input dequantized) only as it is written and
			// checked: GPT-2 XL's f32 values alone would be 6 GB.
			cfg, host, tok, err := (&modelFlags{path: in}).readWith(model.LoadOptions{Half: true})
			if err != nil {
				return err
			}
			// What quantizing cost: the layer matrices' relative RMS
			// error, measured as each is written.
			var se, ss float64
			n := 0
			opt := ggufOptions(cfg, tok, "")
			opt.Converted = func(name string, values []float32, dt tensorfile.DType, data []byte) {
				qf, ok := dt.QuantFormat()
				if !ok || !model.Quantizable(name) {
					return
				}
				n++
				back := make([]float32, len(values))
				quant.Dequantize(qf, back, data)
				for i, v := range back {
					d := float64(v - values[i])
					se += d * d
					ss += float64(values[i]) * float64(values[i])
				}
			}
			if err := model.SaveGGUFWith(out, cfg, host, strings.ToLower(f.String()), opt); err != nil {
				return err
			}
			host = nil
			// The file must load as a quantized checkpoint.
			if _, _, err := model.LoadGGUF(out); err != nil {
				return fmt.Errorf("reading back %s: %w", out, err)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			src := in
			if src == "" {
				src = "the default model"
			}
			fmt.Printf("wrote %s (%d bytes) from %s: %d layer matrices in %v (%.2f bits a weight), relative RMS error %.4f; embeddings f16, norms and biases f32\n",
				out, st.Size(), src, n, f, 8*float64(f.BlockBytes())/float64(f.BlockSize()), math.Sqrt(se/ss))
			return nil
		},
	}
	c.Flags().StringVar(&in, "model", "", "input model: a directory, .safetensors or .gguf file (default: the embedded default model)")
	c.Flags().StringVar(&out, "out", "", "output .gguf file")
	c.Flags().StringVar(&typ, "type", "", "quantization type: q8_0, q4_0 or q4_k")
	_ = c.MarkFlagRequired("type")
	_ = c.MarkFlagRequired("out")
	return c
}
