package tensorfile

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// DType is the element type of a tensor, shared by both formats. Not every
// DType exists in both: safetensors has no block-quantised types and GGUF has
// no unsigned integers, booleans or F8.
type DType uint8

// The dtypes Chameleon knows. F32, F16 and BF16 can be decoded by Float32;
// the others are recognised so that their files parse and their bytes can be
// read with Raw.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I8
	I16
	I32
	I64
	U8
	U16
	U32
	U64
	Bool
	F8E4M3
	F8E5M2
	F8E8M0
	C64
	// ggml block-quantised types (GGUF only).
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	Q8_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	Q8_K
	IQ2_XXS
	IQ2_XS
	IQ3_XXS
	IQ1_S
	IQ4_NL
	IQ3_S
	IQ2_S
	IQ4_XS
	IQ1_M
	TQ1_0
	TQ2_0
	MXFP4
	numDTypes
)

// dtypeInfo describes one DType: its name, its spelling in each format and
// its storage as blocks of blockSize elements taking typeSize bytes (1 and the
// element size for plain types).
type dtypeInfo struct {
	name      string // the name used in messages (the safetensors or ggml spelling)
	st        string // safetensors "dtype" string, "" if not a safetensors type
	ggml      int    // ggml_type id, -1 if not a GGUF type
	blockSize int64
	typeSize  int64
}

var dtypes = [numDTypes]dtypeInfo{
	Invalid: {"invalid", "", -1, 1, 0},
	F32:     {"F32", "F32", 0, 1, 4},
	F16:     {"F16", "F16", 1, 1, 2},
	BF16:    {"BF16", "BF16", 30, 1, 2},
	F64:     {"F64", "F64", 28, 1, 8},
	I8:      {"I8", "I8", 24, 1, 1},
	I16:     {"I16", "I16", 25, 1, 2},
	I32:     {"I32", "I32", 26, 1, 4},
	I64:     {"I64", "I64", 27, 1, 8},
	U8:      {"U8", "U8", -1, 1, 1},
	U16:     {"U16", "U16", -1, 1, 2},
	U32:     {"U32", "U32", -1, 1, 4},
	U64:     {"U64", "U64", -1, 1, 8},
	Bool:    {"BOOL", "BOOL", -1, 1, 1},
	F8E4M3:  {"F8_E4M3", "F8_E4M3", -1, 1, 1},
	F8E5M2:  {"F8_E5M2", "F8_E5M2", -1, 1, 1},
	F8E8M0:  {"F8_E8M0", "F8_E8M0", -1, 1, 1},
	C64:     {"C64", "C64", -1, 1, 8},
	Q4_0:    {"Q4_0", "", 2, 32, 18},
	Q4_1:    {"Q4_1", "", 3, 32, 20},
	Q5_0:    {"Q5_0", "", 6, 32, 22},
	Q5_1:    {"Q5_1", "", 7, 32, 24},
	Q8_0:    {"Q8_0", "", 8, 32, 34},
	Q8_1:    {"Q8_1", "", 9, 32, 36},
	Q2_K:    {"Q2_K", "", 10, 256, 84},
	Q3_K:    {"Q3_K", "", 11, 256, 110},
	Q4_K:    {"Q4_K", "", 12, 256, 144},
	Q5_K:    {"Q5_K", "", 13, 256, 176},
	Q6_K:    {"Q6_K", "", 14, 256, 210},
	Q8_K:    {"Q8_K", "", 15, 256, 292},
	IQ2_XXS: {"IQ2_XXS", "", 16, 256, 66},
	IQ2_XS:  {"IQ2_XS", "", 17, 256, 74},
	IQ3_XXS: {"IQ3_XXS", "", 18, 256, 98},
	IQ1_S:   {"IQ1_S", "", 19, 256, 50},
	IQ4_NL:  {"IQ4_NL", "", 20, 32, 18},
	IQ3_S:   {"IQ3_S", "", 21, 256, 110},
	IQ2_S:   {"IQ2_S", "", 22, 256, 82},
	IQ4_XS:  {"IQ4_XS", "", 23, 256, 136},
	IQ1_M:   {"IQ1_M", "", 29, 256, 56},
	TQ1_0:   {"TQ1_0", "", 34, 256, 54},
	TQ2_0:   {"TQ2_0", "", 35, 256, 66},
	MXFP4:   {"MXFP4", "", 39, 32, 17},
}

var (
	dtypeBySafetensors = map[string]DType{}
	dtypeByGGML        = map[uint32]DType{}
)

func init() {
	for i := range dtypes {
		d := DType(i)
		if s := dtypes[i].st; s != "" {
			dtypeBySafetensors[s] = d
		}
		if g := dtypes[i].ggml; g >= 0 {
			dtypeByGGML[uint32(g)] = d
		}
	}
}

func (d DType) info() dtypeInfo {
	if d >= numDTypes {
		return dtypes[Invalid]
	}
	return dtypes[d]
}

// String returns the dtype's name as its format spells it ("F32", "BF16", "Q4_K").
func (d DType) String() string {
	if d >= numDTypes {
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
	return dtypes[d].name
}

// Valid reports whether d is one of the dtypes declared above (not Invalid).
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

// BlockSize is the number of elements stored together in one block: 1 for
// plain types, 32 or 256 for ggml quantisations.
func (d DType) BlockSize() int64 { return d.info().blockSize }

// BlockBytes is the number of bytes one block takes: the element size for
// plain types.
func (d DType) BlockBytes() int64 { return d.info().typeSize }

// Quantized reports whether d is a ggml block-quantised type.
func (d DType) Quantized() bool { return d.Valid() && d.info().blockSize > 1 }

// Float32Decodable reports whether Float32 can decode tensors of this dtype:
// the float types exactly, and the block formats Chameleon runs (Q8_0, Q4_0,
// Q4_K) by dequantizing.
func (d DType) Float32Decodable() bool {
	_, q := d.QuantFormat()
	return d == F32 || d == F16 || d == BF16 || q
}

// quantFormats maps the block dtypes Chameleon runs to their codecs.
var quantFormats = map[DType]quant.Format{Q8_0: quant.Q8_0, Q4_0: quant.Q4_0, Q4_K: quant.Q4_K}

// QuantFormat is the gpu/quant block format of Q8_0, Q4_0 and Q4_K; ok is
// false for every other dtype (including the block formats Chameleon does
// not run).
func (d DType) QuantFormat() (f quant.Format, ok bool) {
	f, ok = quantFormats[d]
	return f, ok
}

// FromQuantFormat is the DType of a gpu/quant block format (Invalid for
// an unknown one).
func FromQuantFormat(f quant.Format) DType {
	for d, g := range quantFormats {
		if g == f {
			return d
		}
	}
	return Invalid
}

// SafetensorsName is the dtype's safetensors spelling, "" if it has none.
func (d DType) SafetensorsName() string { return d.info().st }

// GGMLType is the dtype's ggml_type id; ok is false if GGUF cannot hold it.
func (d DType) GGMLType() (id uint32, ok bool) {
	g := d.info().ggml
	if !d.Valid() || g < 0 {
		return 0, false
	}
	return uint32(g), true
}

// DTypeFromSafetensors maps a safetensors dtype string to a DType.
func DTypeFromSafetensors(s string) (DType, bool) {
	d, ok := dtypeBySafetensors[s]
	return d, ok
}

// DTypeFromGGML maps a ggml_type id to a DType.
func DTypeFromGGML(id uint32) (DType, bool) {
	d, ok := dtypeByGGML[id]
	return d, ok
}
