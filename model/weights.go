package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Layer holds one transformer block's weights, stored (out, in). The field
// names are Hugging Face GPT-2's tensor names under "h.<i>."; HF stores its
// Conv1D weights (in, out), so loaders transpose them once.
type Layer struct {
	Ln1G, Ln1B   gpu.Tensor // ln_1.{weight,bias} (C)
	AttnW, AttnB gpu.Tensor // attn.c_attn.{weight,bias} (3C, C), (3C)
	ProjW, ProjB gpu.Tensor // attn.c_proj.{weight,bias} (C, C), (C)
	Ln2G, Ln2B   gpu.Tensor // ln_2.{weight,bias} (C)
	FcW, FcB     gpu.Tensor // mlp.c_fc.{weight,bias} (4C, C), (4C)
	Fc2W, Fc2B   gpu.Tensor // mlp.c_proj.{weight,bias} (C, 4C), (C)
}

// Weights is a GPT-2 on a Backend. The output projection is wte (tied).
type Weights struct {
	Wte        gpu.Tensor // wte.weight (V, C)
	Wpe        gpu.Tensor // wpe.weight (P, C)
	Layers     []Layer
	LnFG, LnFB gpu.Tensor // ln_f.{weight,bias} (C)
}

// HostTensor is a named host-side tensor, shape outermost first, in the
// project's (out, in) orientation.
type HostTensor struct {
	Name  string
	Shape []int
	Data  []float32
	// Blocks, when set, are the tensor's ggml blocks of type Quant as a
	// GGUF checkpoint stores them, and Data is nil: Upload keeps them
	// quantized on the device (model/quantize.go).
	Quant  gpu.DType
	Blocks []byte
}

// TensorSpec is the name and shape of every GPT-2 tensor under cfg, in
// checkpoint order, with Conv1D weights in (out, in) orientation.
func TensorSpec(cfg Config) []HostTensor {
	C, V, P := cfg.NEmbd, cfg.VocabSize, cfg.NCtx
	out := []HostTensor{{Name: "wte.weight", Shape: []int{V, C}}, {Name: "wpe.weight", Shape: []int{P, C}}}
	for i := 0; i < cfg.NLayer; i++ {
		p := fmt.Sprintf("h.%d.", i)
		out = append(out,
			HostTensor{Name: p + "ln_1.weight", Shape: []int{C}},
			HostTensor{Name: p + "ln_1.bias", Shape: []int{C}},
			HostTensor{Name: p + "attn.c_attn.weight", Shape: []int{3 * C, C}},
			HostTensor{Name: p + "attn.c_attn.bias", Shape: []int{3 * C}},
			HostTensor{Name: p + "attn.c_proj.weight", Shape: []int{C, C}},
			HostTensor{Name: p + "attn.c_proj.bias", Shape: []int{C}},
			HostTensor{Name: p + "ln_2.weight", Shape: []int{C}},
			HostTensor{Name: p + "ln_2.bias", Shape: []int{C}},
			HostTensor{Name: p + "mlp.c_fc.weight", Shape: []int{4 * C, C}},
			HostTensor{Name: p + "mlp.c_fc.bias", Shape: []int{4 * C}},
			HostTensor{Name: p + "mlp.c_proj.weight", Shape: []int{C, 4 * C}},
			HostTensor{Name: p + "mlp.c_proj.bias", Shape: []int{C}},
		)
	}
	out = append(out, HostTensor{Name: "ln_f.weight", Shape: []int{C}}, HostTensor{Name: "ln_f.bias", Shape: []int{C}})
	return out
}

// RandomInit fills every tensor of cfg with GPT-2's initialisation:
// normal(0, 0.02) matrices and embeddings, residual projections scaled by
// 1/sqrt(2L), zero biases, unit layernorm gains; deterministic for a seed.
func RandomInit(cfg Config, seed uint64) []HostTensor {
	rng := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	ts := TensorSpec(cfg)
	projStd := 0.02 / math.Sqrt(2*float64(cfg.NLayer))
	for i := range ts {
		t := &ts[i]
		t.Data = make([]float32, gpu.Numel(t.Shape))
		name := t.Name
		switch {
		case hasSuffix(name, "ln_1.weight", "ln_2.weight", "ln_f.weight"):
			for j := range t.Data {
				t.Data[j] = 1
			}
		case hasSuffix(name, ".bias"):
		default:
			std := 0.02
			if hasSuffix(name, "attn.c_proj.weight", "mlp.c_proj.weight") {
				std = projStd
			}
			for j := range t.Data {
				t.Data[j] = float32(rng.NormFloat64() * std)
			}
		}
	}
	return ts
}

func hasSuffix(s string, suf ...string) bool {
	for _, x := range suf {
		if len(s) >= len(x) && s[len(s)-len(x):] == x {
			return true
		}
	}
	return false
}

// Upload puts host tensors on b as Weights; matrices and embeddings in
// matDType (F32, F16, or a quantized type for the layer matrices, whose
// embeddings then go in F16), vectors in F32; tensors that carry Blocks
// stay in their own quantized type. Every tensor's shape is checked
// against cfg and errors name the tensor.
func Upload(b gpu.Backend, cfg Config, host []HostTensor, matDType gpu.DType) (*Weights, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	byName := map[string]HostTensor{}
	for _, h := range host {
		byName[h.Name] = h
	}
	up := func(spec HostTensor) (gpu.Tensor, error) {
		h, ok := byName[spec.Name]
		if !ok {
			return nil, fmt.Errorf("model: tensor %q missing", spec.Name)
		}
		dt, data := uploadDType(spec, matDType), any(h.Data)
		if h.Blocks != nil {
			dt, data = h.Quant, h.Blocks
		} else if len(h.Data) != gpu.Numel(spec.Shape) {
			return nil, fmt.Errorf("model: tensor %q has shape %v (%d values), config wants %v", spec.Name, h.Shape, len(h.Data), spec.Shape)
		}
		if !slices.Equal(h.Shape, spec.Shape) {
			return nil, fmt.Errorf("model: tensor %q has shape %v, config wants %v", spec.Name, h.Shape, spec.Shape)
		}
		t, err := b.Alloc(dt, spec.Shape...)
		if err != nil {
			return nil, fmt.Errorf("model: tensor %q: %w", spec.Name, err)
		}
		if err := b.Write(t, data); err != nil {
			return nil, fmt.Errorf("model: tensor %q: %w", spec.Name, err)
		}
		return t, nil
	}
	spec := TensorSpec(cfg)
	ts := make([]gpu.Tensor, len(spec))
	for i, s := range spec {
		t, err := up(s)
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	w := &Weights{Wte: ts[0], Wpe: ts[1], LnFG: ts[len(ts)-2], LnFB: ts[len(ts)-1]}
	for l := 0; l < cfg.NLayer; l++ {
		o := 2 + 12*l
		w.Layers = append(w.Layers, Layer{
			Ln1G: ts[o], Ln1B: ts[o+1], AttnW: ts[o+2], AttnB: ts[o+3], ProjW: ts[o+4], ProjB: ts[o+5],
			Ln2G: ts[o+6], Ln2B: ts[o+7], FcW: ts[o+8], FcB: ts[o+9], Fc2W: ts[o+10], Fc2B: ts[o+11],
		})
	}
	return w, nil
}
