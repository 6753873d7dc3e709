package model

import (
	"github.com/chameleon-llm/chameleon/gpu"
)

// Layer holds one transformer block's weights, stored (out, in). The
// comments give Hugging Face GPT-2's tensor names under "h.<i>."; gpt2Table
// below is where each field is tied to its checkpoint names (HF stores its
// Conv1D weights (in, out), so loaders transpose them once).
type Layer struct {
	Ln1G, Ln1B   gpu.Tensor // ln_1.{weight,bias} (C)
	AttnW, AttnB gpu.Tensor // attn.c_attn.{weight,bias} (3C, C), (3C)
	ProjW, ProjB gpu.Tensor // attn.c_proj.{weight,bias} (C, C), (C)
	Ln2G, Ln2B   gpu.Tensor // ln_2.{weight,bias} (C)
	FcW, FcB     gpu.Tensor // mlp.c_fc.{weight,bias} (4C, C), (4C)
	Fc2W, Fc2B   gpu.Tensor // mlp.c_proj.{weight,bias} (C, 4C), (C)
}

// Weights is a GPT-2 on a Backend, filled by Upload from gpt2Table and
// released by Free. The output projection is wte (tied).
type Weights struct {
	Wte        gpu.Tensor // wte.weight (V, C)
	Wpe        gpu.Tensor // wpe.weight (P, C)
	Layers     []Layer
	LnFG, LnFB gpu.Tensor // ln_f.{weight,bias} (C)
}

// Head is the output projection (V, C) the logits are read through. GPT-2
// ties it to the token embedding; a family with its own head returns that
// here, and every logits path (the forward, the adapters' fused logits,
// the self-check, tuning and the caches) reads it through Head.
func (w *Weights) Head() gpu.Tensor { return w.Wte }

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
	// Half, when set, holds the tensor's values as IEEE half bits (an F16
	// checkpoint tensor loaded with LoadOptions.Half), and Data is nil:
	// Upload writes them to an F16 tensor as they are.
	Half []uint16
}

// value is element i of h's Data or Half.
func (h HostTensor) value(i int) float32 {
	if h.Half != nil {
		return gpu.F16ToF32(h.Half[i])
	}
	return h.Data[i]
}

// gpt2Table is GPT-2's weight table (model/table.go): every tensor's
// checkpoint names, its shape in the config's sizes (V vocabulary, P
// positions, C width; Config.sizes), its role, its initialisation and its
// field. GGUF names are llama.cpp's (checkpoint_gguf.go). The causal-mask
// buffers that older Hugging Face checkpoints carry are not weights.
var gpt2Table = &Table[Weights]{
	Family: "GPT-2",
	New:    func(layers int) *Weights { return &Weights{Layers: make([]Layer, layers)} },
	Pre: []TensorDef[Weights]{
		{Name: "wte.weight", GGUF: "token_embd.weight", Shape: []Axis{"V", "C"}, Role: RoleEmbedding, Init: InitNormal,
			Field: gpt2Global(func(w *Weights) *gpu.Tensor { return &w.Wte })},
		{Name: "wpe.weight", GGUF: "position_embd.weight", Shape: []Axis{"P", "C"}, Role: RoleEmbedding, Init: InitNormal,
			Field: gpt2Global(func(w *Weights) *gpu.Tensor { return &w.Wpe })},
	},
	Layer: []TensorDef[Weights]{
		{Name: "h.{l}.ln_1.weight", GGUF: "blk.{l}.attn_norm.weight", Shape: []Axis{"C"}, Role: RoleVector, Init: InitOne,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Ln1G })},
		{Name: "h.{l}.ln_1.bias", GGUF: "blk.{l}.attn_norm.bias", Shape: []Axis{"C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Ln1B })},
		{Name: "h.{l}.attn.c_attn.weight", GGUF: "blk.{l}.attn_qkv.weight", Shape: []Axis{"3C", "C"}, Role: RoleMatrix, InOut: true, Init: InitNormal,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.AttnW })},
		{Name: "h.{l}.attn.c_attn.bias", GGUF: "blk.{l}.attn_qkv.bias", Shape: []Axis{"3C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.AttnB })},
		{Name: "h.{l}.attn.c_proj.weight", GGUF: "blk.{l}.attn_output.weight", Shape: []Axis{"C", "C"}, Role: RoleMatrix, InOut: true, Init: InitResidual,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.ProjW })},
		{Name: "h.{l}.attn.c_proj.bias", GGUF: "blk.{l}.attn_output.bias", Shape: []Axis{"C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.ProjB })},
		{Name: "h.{l}.ln_2.weight", GGUF: "blk.{l}.ffn_norm.weight", Shape: []Axis{"C"}, Role: RoleVector, Init: InitOne,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Ln2G })},
		{Name: "h.{l}.ln_2.bias", GGUF: "blk.{l}.ffn_norm.bias", Shape: []Axis{"C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Ln2B })},
		{Name: "h.{l}.mlp.c_fc.weight", GGUF: "blk.{l}.ffn_up.weight", Shape: []Axis{"4C", "C"}, Role: RoleMatrix, InOut: true, Init: InitNormal,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.FcW })},
		{Name: "h.{l}.mlp.c_fc.bias", GGUF: "blk.{l}.ffn_up.bias", Shape: []Axis{"4C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.FcB })},
		{Name: "h.{l}.mlp.c_proj.weight", GGUF: "blk.{l}.ffn_down.weight", Shape: []Axis{"C", "4C"}, Role: RoleMatrix, InOut: true, Init: InitResidual,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Fc2W })},
		{Name: "h.{l}.mlp.c_proj.bias", GGUF: "blk.{l}.ffn_down.bias", Shape: []Axis{"C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Layer(func(l *Layer) *gpu.Tensor { return &l.Fc2B })},
	},
	Post: []TensorDef[Weights]{
		{Name: "ln_f.weight", GGUF: "output_norm.weight", Shape: []Axis{"C"}, Role: RoleVector, Init: InitOne,
			Field: gpt2Global(func(w *Weights) *gpu.Tensor { return &w.LnFG })},
		{Name: "ln_f.bias", GGUF: "output_norm.bias", Shape: []Axis{"C"}, Role: RoleVector, Init: InitZero,
			Field: gpt2Global(func(w *Weights) *gpu.Tensor { return &w.LnFB })},
	},
	Ignore: []string{"h.{l}.attn.bias", "h.{l}.attn.masked_bias"},
	Head:   "wte.weight",
}

func gpt2Global(f func(*Weights) *gpu.Tensor) func(*Weights, int) *gpu.Tensor {
	return func(w *Weights, _ int) *gpu.Tensor { return f(w) }
}

func gpt2Layer(f func(*Layer) *gpu.Tensor) func(*Weights, int) *gpu.Tensor {
	return func(w *Weights, l int) *gpu.Tensor { return f(&w.Layers[l]) }
}

// sizes are the config's sizes by the letters of gpt2Table's shapes.
func (c Config) sizes() Sizes { return Sizes{"V": c.VocabSize, "P": c.NCtx, "C": c.NEmbd} }

// TensorSpec is the name and shape of every GPT-2 tensor under cfg, in
// checkpoint order, with Conv1D weights in (out, in) orientation.
func TensorSpec(cfg Config) []HostTensor { return gpt2Table.spec(cfg.sizes(), cfg.NLayer) }

// RandomInit fills every tensor of cfg with GPT-2's initialisation:
// normal(0, 0.02) matrices and embeddings, residual projections scaled by
// 1/sqrt(2L), zero biases, unit layernorm gains; deterministic for a seed.
func RandomInit(cfg Config, seed uint64) []HostTensor {
	return gpt2Table.randomInit(cfg.sizes(), cfg.NLayer, seed)
}

// Upload puts host tensors on b as Weights; matrices and embeddings in
// matDType (F32, F16, or a quantized type for the layer matrices, whose
// embeddings then go in F16), vectors in F32; tensors that carry Blocks
// stay in their own quantized type, and tensors that carry Half go to an
// F16 tensor as they are (widened only for another dtype). Every tensor's shape is checked
// against cfg and errors name the tensor; on an error nothing stays
// allocated.
func Upload(b gpu.Backend, cfg Config, host []HostTensor, matDType gpu.DType) (*Weights, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return gpt2Table.upload(b, cfg.sizes(), cfg.NLayer, host, matDType, UploadOptions{})
}

// UploadReleasing is UploadWith with Release: for a caller that keeps no
// host copy.
func UploadReleasing(b gpu.Backend, cfg Config, host []HostTensor, matDType gpu.DType) (*Weights, error) {
	return UploadWith(b, cfg, host, matDType, UploadOptions{Release: true})
}

// UploadOptions say what Upload leaves on the host and on the device.
type UploadOptions struct {
	// Release drops each host tensor's data (Data, Blocks and Half set to
	// nil in host) once it is on the device, and hands the freed memory
	// back to the operating system as the upload goes, so the weights are
	// never held twice over (on a CPU adapter, where device memory is host
	// memory, that was most of a load's peak). On an error the host
	// tensors not yet uploaded keep their data.
	Release bool
	// Settle keeps each layer matrix (RoleMatrix) as the one device copy
	// MatMul reads (gpu.SettleWeight: on CPU adapters its texture, the
	// storage buffer destroyed). For a model that only runs its forward:
	// ops that read a settled matrix's buffer (ReadF32, MatMulBackward,
	// the storage-buffer matmuls) then fail, saying so.
	Settle bool
	// SettleHead settles wte as well, the tied output projection (whose
	// logits MatMul computes) and Embed's table (Embed then gathers from
	// the texture): for a model run without an adapter, since the
	// adapters, clustering and adapter files read wte's buffer
	// (adapt.BaseOfModel, cluster.Features, adapt.Ops.Logits). wpe, which
	// only Embed reads, keeps its buffer.
	SettleHead bool
}

// UploadWith is Upload with options.
func UploadWith(b gpu.Backend, cfg Config, host []HostTensor, matDType gpu.DType, o UploadOptions) (*Weights, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return gpt2Table.upload(b, cfg.sizes(), cfg.NLayer, host, matDType, o)
}

// Tensors lists w's tensors in checkpoint (TensorSpec) order.
func (w *Weights) Tensors() []gpu.Tensor { return gpt2Table.tensors(w, len(w.Layers)) }

// Free releases w's tensors on b, the backend they were uploaded to, and
// clears w's fields.
func (w *Weights) Free(b gpu.Backend) { gpt2Table.free(b, w, len(w.Layers)) }
