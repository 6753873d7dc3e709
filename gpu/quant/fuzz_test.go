package quant

import (
	"math"
	"testing"
)

// FuzzBlocks decodes arbitrary bytes as blocks of each format: decoding
// never panics, gives finite values whenever every scale is finite, and
// quantizing those values again stays within the format's error bound.
func FuzzBlocks(f *testing.F) {
	f.Add([]byte{0x00, 0x3c, 1, 2, 3})
	f.Add(make([]byte, 300))
	seed := make([]byte, 144)
	for i := range seed {
		seed[i] = byte(i * 37)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		data = data[:min(len(data), 4096)] // a few super-blocks say all
		for _, fm := range Formats {
			bb := fm.BlockBytes()
			nb := len(data) / bb
			if nb == 0 {
				continue
			}
			raw := data[:nb*bb]
			vals := make([]float32, nb*fm.BlockSize())
			Dequantize(fm, vals, raw)
			finite := true
			for b := 0; b < nb; b++ {
				for j := 0; j < map[Format]int{Q8_0: 1, Q4_0: 1, Q4_K: 2}[fm]; j++ {
					h := uint16(raw[b*bb+2*j]) | uint16(raw[b*bb+2*j+1])<<8
					finite = finite && h&0x7c00 != 0x7c00
				}
			}
			if !finite {
				continue
			}
			for i, v := range vals {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%v: finite scales decode weight %d to %v", fm, i, v)
				}
			}
			again := make([]byte, len(raw))
			if err := Quantize(fm, again, vals); err != nil {
				continue // a block's range too wide for an f16 scale
			}
			back := make([]float32, len(vals))
			Dequantize(fm, back, again)
			for b := 0; b < len(vals)/32; b++ {
				var amax float32
				for _, v := range vals[32*b : 32*b+32] {
					amax = max(amax, abs(v))
				}
				// One grid step (plus the f16 rounding of scales, and a
				// sub-block min that Q4_K's 6-bit mins round) at most, and
				// in the f16 subnormal range the scale's own step (2^-24)
				// times the largest quantized value it multiplies.
				slack := map[Format]float64{Q8_0: 128, Q4_0: 8, Q4_K: 1000}[fm] * math.Ldexp(1, -24)
				bound := float64(amax)/7*1.1 + slack
				if fm == Q4_K {
					// ... and the 6-bit scales and mins, steps of 1/63 of
					// the super-block's largest, round by half a step.
					var smax float32
					for _, v := range vals[256*(b/8) : 256*(b/8)+256] {
						smax = max(smax, abs(v))
					}
					bound = 2*float64(amax)/7*1.1 + 2*float64(smax)/63*1.1 + slack
				}
				for i := 32 * b; i < 32*b+32; i++ {
					if e := math.Abs(float64(back[i] - vals[i])); e > bound && !math.IsInf(e, 0) {
						t.Fatalf("%v: requantizing weight %d: %g -> %g (bound %g)", fm, i, vals[i], back[i], bound)
					}
				}
			}
		}
	})
}
