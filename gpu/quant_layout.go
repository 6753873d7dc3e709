package gpu

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// How quantized weights sit in a storage buffer. WGSL reads u32 words, and a
// Q8_0 block (34 bytes) or Q4_0 block (18 bytes) does not start on a word,
// so each row of w (N, K) is stored as its quantized values first, then its
// f16 scales two to a word, in kw = quantRowWords(K) words:
//
//	Q8_0  row = nb*8 words of int8 (block b's 32 values in words 8b..8b+7),
//	      then ceil(nb/2) words of f16 d (block b: half b%2 of word b/2)
//	Q4_0  row = nb*4 words of nibbles (block b's 16 bytes in words 4b..4b+3),
//	      then ceil(nb/2) words of f16 d
//	Q4_K  row = the super-blocks as GGUF stores them, 36 words each (144
//	      bytes are whole words): word 0 d | dmin<<16, words 1-3 the
//	      packed scales, words 4-35 the nibbles
//
// with nb = K/32 blocks. The packing costs no memory (Q8_0 and Q4_0 spend
// 2 bytes of padding per row when nb is odd) and keeps every row at a
// whole-word stride, so w splits into row chunks like any other weight.
// The kernels' dequant fragments (wgsl/quant_*.wgsli) read this layout.

// quantRowWords is the row stride in u32 words of a quantized row of k
// weights (k a whole number of blocks).
func quantRowWords(f quant.Format, k int) int {
	nb := k / 32
	switch f {
	case quant.Q8_0:
		return nb*8 + (nb+1)/2
	case quant.Q4_0:
		return nb*4 + (nb+1)/2
	}
	return k / 256 * 36
}

// packQuantRows turns rows of ggml blocks into the storage layout above.
func packQuantRows(f quant.Format, raw []byte, rows, k int) []byte {
	if f == quant.Q4_K {
		return raw // already whole words
	}
	nb, bb := k/32, f.BlockBytes()
	qw := bb - 2 // bytes of values per block
	kw := quantRowWords(f, k)
	out := make([]byte, rows*kw*4)
	for r := 0; r < rows; r++ {
		src, dst := raw[r*nb*bb:(r+1)*nb*bb], out[r*kw*4:(r+1)*kw*4]
		sc := dst[nb*qw:]
		for b := 0; b < nb; b++ {
			blk := src[b*bb : (b+1)*bb]
			copy(dst[b*qw:], blk[2:])
			copy(sc[2*b:], blk[:2])
		}
	}
	return out
}

// unpackQuantRows is packQuantRows' inverse.
func unpackQuantRows(f quant.Format, packed []byte, rows, k int) []byte {
	if f == quant.Q4_K {
		return packed[:rows*k/256*144]
	}
	nb, bb := k/32, f.BlockBytes()
	qw := bb - 2
	kw := quantRowWords(f, k)
	out := make([]byte, rows*nb*bb)
	for r := 0; r < rows; r++ {
		src, dst := packed[r*kw*4:(r+1)*kw*4], out[r*nb*bb:(r+1)*nb*bb]
		sc := src[nb*qw:]
		for b := 0; b < nb; b++ {
			blk := dst[b*bb : (b+1)*bb]
			copy(blk[2:], src[b*qw:(b+1)*qw])
			copy(blk[:2], sc[2*b:2*b+2])
		}
	}
	return out
}

// CheckQuantShape reports whether a tensor of dtype dt (quantized) and this
// shape can exist: its rows (the last dim) must be whole blocks.
func CheckQuantShape(dt DType, shape []int) error {
	f, ok := dt.Quant()
	if !ok {
		return nil
	}
	if len(shape) == 0 {
		return fmt.Errorf("gpu: a %v tensor cannot be a scalar", dt)
	}
	k := shape[len(shape)-1]
	if k%f.BlockSize() != 0 {
		return fmt.Errorf("gpu: a %v tensor %v: rows of %d weights are not a whole number of blocks of %d", dt, shape, k, f.BlockSize())
	}
	return nil
}

// QuantBlocks returns the ggml blocks of a quantized tensor's host data:
// data itself when it is []byte of the right length, the quantized values
// when it is []float32 (one value per element).
func QuantBlocks(dt DType, shape []int, data any) ([]byte, error) {
	f, ok := dt.Quant()
	if !ok {
		panic(fmt.Sprintf("gpu: QuantBlocks of a %v tensor", dt))
	}
	if err := CheckQuantShape(dt, shape); err != nil {
		return nil, err
	}
	n := Numel(shape)
	size := n / f.BlockSize() * f.BlockBytes()
	switch v := data.(type) {
	case []byte:
		if len(v) != size {
			return nil, fmt.Errorf("gpu: Write: %v tensor %v needs %d bytes of blocks, got %d", dt, shape, size, len(v))
		}
		return v, nil
	case []float32:
		if len(v) != n {
			return nil, fmt.Errorf("gpu: Write: %v tensor %v needs []float32 of length %d, got %d", dt, shape, n, len(v))
		}
		raw := make([]byte, size)
		if err := quant.Quantize(f, raw, v); err != nil {
			return nil, fmt.Errorf("gpu: Write: %v tensor %v: %w", dt, shape, err)
		}
		return raw, nil
	}
	return nil, fmt.Errorf("gpu: Write: %v tensor %v needs []byte of blocks or []float32, got %T", dt, shape, data)
}
