package gpu

import (
	"encoding/binary"

	"github.com/chameleon-llm/chameleon/gpu/quant"
)

// F32ToF16 converts x to IEEE half precision bits, rounding to nearest even;
// out-of-range values become ±Inf, NaN stays NaN. (The conversion lives in
// gpu/quant, whose block formats carry f16 scales.)
func F32ToF16(x float32) uint16 { return quant.F32ToF16(x) }

// F16ToF32 converts IEEE half precision bits to float32 exactly.
func F16ToF32(h uint16) float32 { return quant.F16ToF32(h) }

// RoundF16 rounds x to the nearest representable half-precision value.
func RoundF16(x float32) float32 { return quant.RoundF16(x) }

// halfRows lays out rows r0.. of an F16 tensor with rows of c values as its
// device bytes in dst (a whole number of rows): little-endian halves, each
// row padded to an even length; half(i) is the tensor's element i.
func halfRows(dst []byte, r0, c int, half func(i int) uint16) {
	cp := (c + 1) / 2 * 2
	for i := 0; i < len(dst)/(2*cp); i++ {
		row := dst[2*i*cp : 2*(i+1)*cp]
		for j := 0; j < c; j++ {
			binary.LittleEndian.PutUint16(row[2*j:], half((r0+i)*c+j))
		}
		if c < cp {
			binary.LittleEndian.PutUint16(row[2*c:], 0)
		}
	}
}
