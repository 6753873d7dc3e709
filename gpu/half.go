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

// halfRows lays out halves h of a tensor of shape as an F16 tensor's
// device bytes: little-endian, each row padded to an even length.
func halfRows(h []uint16, shape []int) []byte {
	r, c := rowsCols(shape)
	cp := (c + 1) / 2 * 2
	raw := make([]byte, 2*r*cp)
	for i := 0; i < r; i++ {
		for j, v := range h[i*c : (i+1)*c] {
			binary.LittleEndian.PutUint16(raw[2*(i*cp+j):], v)
		}
	}
	return raw
}
