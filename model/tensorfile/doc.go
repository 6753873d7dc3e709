// Package tensorfile reads and writes the two weight-file formats Chameleon
// loads: safetensors (Hugging Face) and GGUF (ggml, versions 2 and 3).
//
// Both readers take an io.ReaderAt and the file size, parse only the header,
// and validate all of it before they return: every size, count, string length
// and offset read from the file is checked against the bytes actually present
// before anything is allocated from it, so a hostile or truncated file gives an
// error, never a panic or an allocation out of proportion to the file. Tensor
// data is read lazily through the ReaderAt by Raw and Float32.
//
// Invariants of a successfully read file:
//   - tensor names are unique; Names returns them sorted;
//   - every tensor's byte range [Offset, Offset+Size) lies inside the file,
//     Size equals what its dtype and shape require, and no two non-empty
//     ranges overlap (gaps between them are allowed);
//   - shapes are row-major and outermost first, as everywhere in Chameleon.
//     GGUF stores dims innermost first; GGUFTensorInfo keeps those raw in Dims
//     and exposes the reversed, outermost-first Shape like safetensors.
//
// Float32 decodes F32, F16 and BF16 exactly (F16 and BF16 values are all
// representable in float32) and dequantizes Q8_0, Q4_0 and Q4_K (gpu/quant,
// ggml's arithmetic). Other dtypes (F64, integers, F8, the other ggml block
// quantisations) are recognised, so their files parse and their bytes are
// available through Raw, but Float32 reports them as unsupported. NaN/Inf
// screening is opt-in through CheckFinite, so loading does not always pay for
// a full pass over the data.
//
// The writers produce files the readers accept and read back bit-exactly:
// safetensors with tensors in sorted-name order and the JSON header padded
// with spaces to a multiple of 8 bytes; GGUF version 3 with tensors in the
// given order, each aligned to general.alignment (32 unless the metadata sets
// it). FromFloat32 converts float32 values to F32, F16 or BF16 with
// round-to-nearest-even, or quantizes them to Q8_0, Q4_0 or Q4_K.
//
// Everything is little-endian; big-endian GGUF files are rejected.
package tensorfile
