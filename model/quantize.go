package model

// Quantized weights (ggml's Q8_0, Q4_0, Q4_K; layouts in gpu/quant).
//
// Which tensors are quantized: the layer matrices of every block (RoleMatrix
// in the weight table: GPT-2's attn.c_attn, attn.c_proj, mlp.c_fc and
// mlp.c_proj weights), which are only ever MatMul's w. The token and position embeddings stay F16: Embed gathers
// their rows, and wte is also the tied output projection (whose logits the
// adaptation's generated updates are added to, and whose f16 values identify
// the base for adapter files). Layer norms and biases stay F32, as in every
// GGUF converter. A GGUF file that stores other tensors quantized still
// loads: those are dequantized on the host (exactly, as ggml does) and
// uploaded like float tensors.
//
// Loading keeps a quantized layer matrix as its raw blocks (HostTensor.Blocks)
// from the file to the device, never as float32; Upload hands the blocks to
// the backend and the caller drops the host slice, so no host copy survives
// the upload.

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// Quantizable reports whether the tensor of this TensorSpec name is stored
// quantized in a quantized checkpoint: the layer matrices (RoleMatrix in
// GPT-2's table).
func Quantizable(name string) bool {
	d, _, ok := gpt2Table.find(name)
	return ok && d.Role == RoleMatrix
}

// uploadDType is the device dtype of a tensor of role r uploaded from float
// data.
func uploadDType(r Role, matDType gpu.DType) gpu.DType {
	switch {
	case r == RoleVector:
		return gpu.F32
	case matDType.Quantized() && r != RoleMatrix:
		return gpu.F16
	}
	return matDType
}

// keepBlocks reads a quantized layer matrix's raw blocks into s (and
// reports true) instead of decoding it; other tensors are left to Float32.
func keepBlocks(s *HostTensor, r Role, src tensorSource, fn string, info tensorfile.TensorInfo) (bool, error) {
	f, ok := info.DType.QuantFormat()
	if !ok || r != RoleMatrix {
		return false, nil
	}
	rs, ok := src.(interface{ Raw(string) ([]byte, error) })
	if !ok {
		return false, nil
	}
	raw, err := rs.Raw(fn)
	if err != nil {
		return false, err
	}
	s.Quant, s.Blocks = gpu.QuantDType(f), raw
	return true, nil
}

// Dequantize returns host with every tensor that carries Blocks decoded, or
// Half widened, to float32 Data (the others shared, not copied).
func Dequantize(host []HostTensor) []HostTensor {
	out := make([]HostTensor, len(host))
	for i, h := range host {
		out[i] = h
		if h.Half != nil {
			out[i].Data, out[i].Half = widen(h.Half), nil
			continue
		}
		if h.Blocks == nil {
			continue
		}
		f, _ := h.Quant.Quant()
		out[i].Data = make([]float32, gpu.Numel(h.Shape))
		quant.Dequantize(f, out[i].Data, h.Blocks)
		out[i].Quant, out[i].Blocks = 0, nil
	}
	return out
}

// Values returns h's values as float32: Data as it is, Half widened,
// Blocks dequantized (one tensor at a time, where Dequantize widens a
// whole checkpoint).
func (h HostTensor) Values() []float32 {
	return Dequantize([]HostTensor{h})[0].Data
}

// count is the number of values h holds (Data or Half; 0 for blocks).
func (h HostTensor) count() int {
	if h.Half != nil {
		return len(h.Half)
	}
	return len(h.Data)
}

// firstNonFinite finds the first NaN or infinite value of h's Data or
// Half (blocks are checked where they are dequantized).
func (h HostTensor) firstNonFinite() (int, float32, bool) {
	for j, v := range h.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return j, v, true
		}
	}
	for j, b := range h.Half {
		if b&0x7c00 == 0x7c00 {
			return j, gpu.F16ToF32(b), true
		}
	}
	return 0, 0, false
}

// QuantizedBytes sums the device-independent size of the host tensors'
// weights: blocks as stored, float data at 4 bytes a value, halves at 2.
func QuantizedBytes(host []HostTensor) int {
	n := 0
	for _, h := range host {
		n += len(h.Blocks) + 4*len(h.Data) + 2*len(h.Half)
	}
	return n
}

// widen returns halves as float32 values.
func widen(h []uint16) []float32 {
	out := make([]float32, len(h))
	for i, v := range h {
		out[i] = gpu.F16ToF32(v)
	}
	return out
}

// ggufQuantFileType is llama.cpp's general.file_type for a file whose layer
// matrices are all in f (LLAMA_FTYPE_MOSTLY_Q8_0, _Q4_0, _Q4_K_S).
func ggufQuantFileType(f quant.Format) uint32 {
	return map[quant.Format]uint32{quant.Q8_0: 7, quant.Q4_0: 2, quant.Q4_K: 14}[f]
}

// checkQuantRows reports, naming the tensor, a layer matrix whose rows are
// not a whole number of f's blocks.
func checkQuantRows(cfg Config, f quant.Format) error {
	for _, e := range gpt2Table.entries(cfg.sizes(), cfg.NLayer) {
		if e.Role == RoleMatrix && e.Shape[1]%f.BlockSize() != 0 {
			return fmt.Errorf("model: %v needs rows of whole %d-weight blocks, but %s (%s) has rows of %d",
				f, f.BlockSize(), e.Name, e.GGUF, e.Shape[1])
		}
	}
	return nil
}
