package model

// Saving checkpoints: SaveHF (SaveGGUF is in checkpoint_gguf.go) and what
// both share: the dtype argument, the check of the tensors to save, and
// atomic file writes.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// checkpointDType maps SaveHF's and SaveGGUF's dtype argument.
func checkpointDType(s string) (tensorfile.DType, string, error) {
	switch s {
	case "f32":
		return tensorfile.F32, "float32", nil
	case "f16":
		return tensorfile.F16, "float16", nil
	case "bf16":
		return tensorfile.BF16, "bfloat16", nil
	}
	return tensorfile.Invalid, "", fmt.Errorf("model: checkpoint dtype %q is not one of f32, f16, bf16", s)
}

// SaveHF writes a Hugging Face GPT2LMHeadModel checkpoint into dir (created
// if needed): config.json (model_type gpt2, n_ctx = n_positions, torch_dtype)
// and model.safetensors with every tensor in dtype ("f32", "f16" or "bf16";
// f16 and bf16 round to nearest even), metadata {"format": "pt"}.
//
// Names are written as GPT2LMHeadModel.save_pretrained writes them today: with
// the "transformer." prefix, without lm_head.weight (tied to wte, so
// transformers re-ties it on load) and without the causal-mask buffers (not
// persistent in current transformers). Conv1D weights are transposed back to
// HF's (in, out). host must be exactly TensorSpec(cfg) with data, in any
// order, and finite. Each file is written to a temporary name and renamed
// into place. Tokenizer files are not written; copy encoder.json and vocab.bpe
// alongside if the checkpoint should carry them.
func SaveHF(dir string, cfg Config, host []HostTensor, dtype string) error {
	dt, torchDType, err := checkpointDType(dtype)
	if err != nil {
		return err
	}
	ordered, err := checkHost(cfg, Dequantize(host))
	if err != nil {
		return err
	}
	es := gpt2Table.entries(cfg.sizes(), cfg.NLayer) // ordered's order
	ts := make([]tensorfile.Tensor, len(ordered))
	for i, h := range ordered {
		shape, data := h.Shape, h.Data
		if es[i].InOut {
			shape, data = []int{h.Shape[1], h.Shape[0]}, transpose(h.Data, h.Shape[0], h.Shape[1])
		}
		if ts[i], err = tensorfile.FromFloat32(hfPrefix+h.Name, dt, shape, data); err != nil {
			return fmt.Errorf("model: %w", err)
		}
	}
	conf, err := json.MarshalIndent(hfConfigOut{
		ModelType: "gpt2", Architectures: []string{"GPT2LMHeadModel"},
		VocabSize: cfg.VocabSize, NPositions: cfg.NCtx, NCtx: cfg.NCtx,
		NEmbd: cfg.NEmbd, NHead: cfg.NHead, NLayer: cfg.NLayer,
		LNEps:      json.Number(strconv.FormatFloat(float64(cfg.LNEps), 'g', -1, 32)),
		Activation: "gelu_new", TieWordEmbeddings: true, TorchDType: torchDType,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("model: config.json: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	err = writeFileAtomic(filepath.Join(dir, hfWeightsFile), func(w io.Writer) error {
		return tensorfile.WriteSafetensors(w, ts, map[string]string{"format": "pt"})
	})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, hfConfigFile), func(w io.Writer) error {
		_, err := w.Write(append(conf, '\n'))
		return err
	})
}

// checkHost checks tensors about to be saved against cfg: exactly the
// tensors of TensorSpec(cfg), each with its shape, matching data and only
// finite values. It returns them in TensorSpec order.
func checkHost(cfg Config, host []HostTensor) ([]HostTensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	byName := make(map[string]HostTensor, len(host))
	for _, h := range host {
		if _, dup := byName[h.Name]; dup {
			return nil, fmt.Errorf("model: saving: tensor %s appears twice", h.Name)
		}
		byName[h.Name] = h
	}
	spec := TensorSpec(cfg)
	out := make([]HostTensor, len(spec))
	for i, s := range spec {
		h, ok := byName[s.Name]
		if !ok {
			return nil, fmt.Errorf("model: saving: tensor %s missing", s.Name)
		}
		if !slices.Equal(h.Shape, s.Shape) || h.Blocks == nil && h.count() != gpu.Numel(s.Shape) {
			return nil, fmt.Errorf("model: saving: %s has shape %v (%d values), config wants %v",
				s.Name, h.Shape, h.count(), s.Shape)
		}
		if j, v, ok := h.firstNonFinite(); ok {
			return nil, fmt.Errorf("model: saving: %s element %d is %v", s.Name, j, v)
		}
		out[i] = h
		delete(byName, s.Name)
	}
	if len(byName) > 0 {
		extra := slices.Sorted(maps.Keys(byName))
		return nil, fmt.Errorf("model: saving: tensor %s is not part of GPT-2 under config %+v", extra[0], cfg)
	}
	return out, nil
}

// writeFileAtomic writes path atomically (tensorfile.WriteFileAtomic).
func writeFileAtomic(path string, fill func(io.Writer) error) error {
	if err := tensorfile.WriteFileAtomic(path, fill); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}
