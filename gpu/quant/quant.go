// Package quant encodes and decodes ggml's block-quantised weight formats
// that Chameleon runs (Q8_0, Q4_0 and Q4_K), in plain Go. It is the ground
// truth for the WGSL kernels that dequantize these blocks in registers, the
// codec behind `chameleon quantize`, and what readers use to turn a
// quantized tensor back into float32.
//
// Block layouts (little-endian, as GGUF stores them; a row of K weights is
// K/BlockSize blocks, and a row's blocks never straddle rows):
//
//	Q8_0  32 weights, 34 bytes: f16 d, int8 q[32];            w[i] = d*q[i]
//	Q4_0  32 weights, 18 bytes: f16 d, u8 qs[16];             w[i] = d*(nib(i)-8)
//	      nib(i) = qs[i] & 15 for i < 16, qs[i-16] >> 4 for i >= 16
//	Q4_K 256 weights, 144 bytes: f16 d, f16 dmin, u8 sc[12], u8 qs[128]
//	      eight sub-blocks s of 32 weights, each with a 6-bit scale S[s] and
//	      6-bit min M[s] packed in sc (see scaleMin); sub-blocks 2j and 2j+1
//	      share qs[32j .. 32j+32]: the low nibbles are sub-block 2j, the high
//	      nibbles 2j+1; w = d*S[s]*nib - dmin*M[s]
//
// Every dequantized value is computed exactly as ggml does it, and in f32
// each product above is exact (an 11-bit f16 significand times an integer of
// at most 8 bits), so the GPU kernels, this package and ggml agree bit for
// bit on the weights.
package quant

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Format is a block-quantised weight format.
type Format uint8

// The formats; the values are not ggml's type ids (see GGMLType).
const (
	Q8_0 Format = iota + 1
	Q4_0
	Q4_K
)

// Formats lists every format, for tests and flags.
var Formats = []Format{Q8_0, Q4_0, Q4_K}

func (f Format) String() string {
	switch f {
	case Q8_0:
		return "Q8_0"
	case Q4_0:
		return "Q4_0"
	case Q4_K:
		return "Q4_K"
	}
	return fmt.Sprintf("quant.Format(%d)", uint8(f))
}

// Parse maps a name ("q8_0", "Q4_K", ...) to its format; the error names
// the unknown name and the supported ones.
func Parse(name string) (Format, error) {
	for _, f := range Formats {
		if equalFold(name, f.String()) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("quant: unknown quantization type %q (supported: q8_0, q4_0, q4_k)", name)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// GGMLType is the format's ggml_type id (Q4_0 = 2, Q8_0 = 8, Q4_K = 12).
func (f Format) GGMLType() uint32 {
	return [...]uint32{0, 8, 2, 12}[f]
}

// BlockSize is the number of weights in one block.
func (f Format) BlockSize() int {
	if f == Q4_K {
		return 256
	}
	return 32
}

// BlockBytes is the size of one block in bytes.
func (f Format) BlockBytes() int {
	return [...]int{0, 34, 18, 144}[f]
}

// RowBytes is the size of a row of k weights, or an error when k is not a
// whole number of blocks.
func (f Format) RowBytes(k int) (int, error) {
	if k < 0 || k%f.BlockSize() != 0 {
		return 0, fmt.Errorf("quant: a row of %d weights is not a whole number of %v blocks of %d", k, f, f.BlockSize())
	}
	return k / f.BlockSize() * f.BlockBytes(), nil
}

// Dequantize decodes src, a whole number of blocks, into dst, whose length
// must be the blocks' weight count. It panics on mismatched lengths.
func Dequantize(f Format, dst []float32, src []byte) {
	bs, bb := f.BlockSize(), f.BlockBytes()
	if len(src)%bb != 0 || len(src)/bb*bs != len(dst) {
		panic(fmt.Sprintf("quant: Dequantize %v: %d bytes for %d weights", f, len(src), len(dst)))
	}
	for b := 0; b < len(src)/bb; b++ {
		blk, out := src[b*bb:(b+1)*bb], dst[b*bs:(b+1)*bs]
		switch f {
		case Q8_0:
			d := f16(blk[0:])
			for i := 0; i < 32; i++ {
				out[i] = d * float32(int8(blk[2+i]))
			}
		case Q4_0:
			d := f16(blk[0:])
			for i := 0; i < 16; i++ {
				q := blk[2+i]
				out[i] = d * float32(int(q&15)-8)
				out[i+16] = d * float32(int(q>>4)-8)
			}
		case Q4_K:
			d, dmin := f16(blk[0:]), f16(blk[2:])
			sc, qs := blk[4:16], blk[16:144]
			for s := 0; s < 8; s++ {
				S, M := scaleMin(sc, s)
				scale, min := d*float32(S), dmin*float32(M)
				sh := uint(4 * (s % 2))
				for i := 0; i < 32; i++ {
					out[32*s+i] = scale*float32(qs[32*(s/2)+i]>>sh&15) - min
				}
			}
		}
	}
}

// scaleMin unpacks sub-block s's 6-bit scale and min from Q4_K's 12 bytes:
// bytes 0-3 hold scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; the
// scales and mins of sub-blocks 4-7 keep their low 4 bits in bytes 8-11
// (scale low nibble, min high nibble) and their top 2 bits in the top bits
// of bytes 0-3 (scales) and 4-7 (mins).
func scaleMin(sc []byte, s int) (uint8, uint8) {
	if s < 4 {
		return sc[s] & 63, sc[s+4] & 63
	}
	return sc[s+4]&15 | sc[s-4]>>6<<4, sc[s+4]>>4 | sc[s]>>6<<4
}

// packScaleMin is scaleMin's inverse for 8 scales and mins below 64.
func packScaleMin(sc []byte, S, M *[8]uint8) {
	for j := 0; j < 4; j++ {
		sc[j] = S[j] | S[j+4]>>4<<6
		sc[j+4] = M[j] | M[j+4]>>4<<6
		sc[j+8] = S[j+4]&15 | M[j+4]&15<<4
	}
}

func f16(b []byte) float32 { return F16ToF32(uint16(b[0]) | uint16(b[1])<<8) }

func putF16(b []byte, v float32) {
	h := F32ToF16(v)
	b[0], b[1] = byte(h), byte(h>>8)
}

// Quantize encodes src (a whole number of blocks) into dst (its block
// bytes). Values must be finite, and a block's scale must fit a half (the
// block's largest magnitude below about 127*65504 for Q8_0); otherwise it
// returns an error naming the first such block. Blocks are independent, so
// a large tensor is encoded by several goroutines, each its own range of
// blocks: the bytes are the same as one goroutine's.
func Quantize(f Format, dst []byte, src []float32) error {
	bs, bb := f.BlockSize(), f.BlockBytes()
	if len(src)%bs != 0 || len(src)/bs*bb != len(dst) {
		return fmt.Errorf("quant: Quantize %v: %d weights are not whole blocks of %d, or %d bytes do not hold them", f, len(src), bs, len(dst))
	}
	nb := len(src) / bs
	workers := min(runtime.GOMAXPROCS(0), nb/quantChunkMin)
	if workers <= 1 {
		return quantizeBlocks(f, dst, src, 0, nb)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*nb/workers, (w+1)*nb/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = quantizeBlocks(f, dst, src, lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs { // ranges in order: the first bad block's error
		if err != nil {
			return err
		}
	}
	return nil
}

// quantChunkMin is the fewest blocks worth a goroutine of Quantize.
const quantChunkMin = 4096

// quantizeBlocks encodes blocks [lo, hi) of src into dst, stopping at the
// first block it cannot encode.
func quantizeBlocks(f Format, dst []byte, src []float32, lo, hi int) error {
	bs, bb := f.BlockSize(), f.BlockBytes()
	for b := lo; b < hi; b++ {
		in, out := src[b*bs:(b+1)*bs], dst[b*bb:(b+1)*bb]
		for i, v := range in {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("quant: %v block %d: weight %d is %v", f, b, i, v)
			}
		}
		var ok bool
		switch f {
		case Q8_0:
			ok = quantQ8_0(out, in)
		case Q4_0:
			ok = quantQ4_0(out, in)
		case Q4_K:
			ok = quantQ4_K(out, in)
		}
		if !ok {
			return fmt.Errorf("quant: %v block %d: its scale does not fit a half-precision float", f, b)
		}
	}
	return nil
}

// quantQ8_0: d = max|x|/127 rounded to f16, q = round(x/d).
func quantQ8_0(out []byte, in []float32) bool {
	var amax float32
	for _, v := range in {
		amax = max(amax, abs(v))
	}
	d := RoundF16(amax / 127)
	if math.IsInf(float64(d), 0) {
		return false
	}
	putF16(out, d)
	for i, v := range in {
		q := 0
		if d != 0 {
			q = int(math.RoundToEven(float64(v / d)))
		}
		out[2+i] = byte(int8(clamp(q, -127, 127)))
	}
	return true
}

// quantQ4_0 chooses the block's scale d (x ≈ d*(q-8), q in 0..15) by
// the squared error it leaves, and writes it and the rounded weights.
// The start is the plain rule (the value of largest magnitude m maps to
// -8, so the other sign gets the full 7 steps: d = -m/8); candidates
// stretch that grid, d = -m/k for k in [7, 9], each refitted by least
// squares for its roundings. A candidate is taken only if it lowers the
// block's squared error and leaves no weight off by more than the plain
// rule's worst case (|m|/8, or the plain grid's own largest error): a
// smaller error on the block as a whole, never a larger one on a weight.
// The decoder is unchanged: any Q4_0 reader takes these blocks.
func quantQ4_0(out []byte, in []float32) bool {
	var amax, m float32
	for _, v := range in {
		if abs(v) > amax {
			amax, m = abs(v), v
		}
	}
	d := RoundF16(m / -8)
	if math.IsInf(float64(d), 0) {
		return false
	}
	if d != 0 {
		best, worst := q4Error(in, d)
		worst = max(worst, float64(amax)/8)
		try := func(c float32) {
			c = RoundF16(c)
			if c == 0 || math.IsInf(float64(c), 0) || m/c < -9 || m/c > -7 {
				return
			}
			if e, w := q4Error(in, c); e < best && w <= worst {
				d, best = c, e
			}
		}
		for k := float32(7); k <= 9.001; k += 0.125 {
			c := m / -k
			try(c)
			// Least squares for c's roundings: d = Σ x·q / Σ q², q = round(x/c).
			var xq, qq float64
			for _, v := range in {
				q := float64(clamp(int(math.RoundToEven(float64(v/c))), -8, 7))
				xq += float64(v) * q
				qq += q * q
			}
			if qq > 0 {
				try(float32(xq / qq))
			}
		}
	}
	putF16(out, d)
	q := func(v float32) byte {
		if d == 0 {
			return 8
		}
		return byte(clamp(int(math.RoundToEven(float64(v/d)))+8, 0, 15))
	}
	for i := 0; i < 16; i++ {
		out[2+i] = q(in[i]) | q(in[i+16])<<4
	}
	return true
}

// q4Error is the squared error of the block x on the Q4_0 grid of scale d
// and its largest error on one weight.
func q4Error(x []float32, d float32) (sum, worst float64) {
	for _, v := range x {
		r := float64(d*float32(clamp(int(math.RoundToEven(float64(v/d))), -8, 7)) - v)
		sum += r * r
		worst = max(worst, math.Abs(r))
	}
	return sum, worst
}

// quantQ4_K fits each sub-block of 32 an affine grid x ≈ scale*q - min
// (q in 0..15, min >= 0) by least squares over a few starting grids, then
// quantizes the eight scales and mins to 6 bits under the super-block's
// d and dmin and requantizes every weight against the grid it will get.
func quantQ4_K(out []byte, in []float32) bool {
	var scales, mins [8]float32
	for s := 0; s < 8; s++ {
		scales[s], mins[s] = fitAffine4(in[32*s : 32*s+32])
	}
	var smax, mmax float32
	for s := 0; s < 8; s++ {
		smax, mmax = max(smax, scales[s]), max(mmax, mins[s])
	}
	d, dmin := RoundF16(smax/63), RoundF16(mmax/63)
	if math.IsInf(float64(d), 0) || math.IsInf(float64(dmin), 0) {
		return false
	}
	var S, M [8]uint8
	for s := 0; s < 8; s++ {
		if d > 0 {
			S[s] = uint8(clamp(int(math.RoundToEven(float64(scales[s]/d))), 0, 63))
		}
		if dmin > 0 {
			M[s] = uint8(clamp(int(math.RoundToEven(float64(mins[s]/dmin))), 0, 63))
		}
	}
	putF16(out[0:], d)
	putF16(out[2:], dmin)
	packScaleMin(out[4:16], &S, &M)
	qs := out[16:144]
	for i := range qs {
		qs[i] = 0
	}
	for s := 0; s < 8; s++ {
		scale, min := d*float32(S[s]), dmin*float32(M[s])
		sh := uint(4 * (s % 2))
		for i := 0; i < 32; i++ {
			q := 0
			if scale > 0 {
				q = clamp(int(math.RoundToEven(float64((in[32*s+i]+min)/scale))), 0, 15)
			}
			qs[32*(s/2)+i] |= byte(q) << sh
		}
	}
	return true
}

// fitAffine4 returns (scale >= 0, min >= 0) minimising the squared error
// of x ≈ scale*q - min with q = clamp(round((x+min)/scale), 0, 15): the
// grid through the extremes (min clamped so that 0 is inside it), then a
// least-squares refit of scale and min for the assignments of a few
// stretched grids, keeping the best.
func fitAffine4(x []float32) (float32, float32) {
	lo, hi := float32(0), float32(0)
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		return 0, -lo
	}
	errOf := func(scale, mn float32) float64 {
		var e float64
		for _, v := range x {
			q := float32(0)
			if scale > 0 {
				q = float32(clamp(int(math.RoundToEven(float64((v+mn)/scale))), 0, 15))
			}
			r := float64(scale*q - mn - v)
			e += r * r
		}
		return e
	}
	bestS, bestM := (hi-lo)/15, -lo
	best := errOf(bestS, bestM)
	for step := -4; step <= 8; step++ {
		s0 := (hi - lo) / (15 + 0.1*float32(step))
		// Assign on the stretched grid, then refit scale and offset.
		var n, sq, sx, sqq, sqx float64
		for _, v := range x {
			q := float64(clamp(int(math.RoundToEven(float64((v-lo)/s0))), 0, 15))
			n++
			sq += q
			sx += float64(v)
			sqq += q * q
			sqx += q * float64(v)
		}
		den := n*sqq - sq*sq
		if den <= 0 {
			continue
		}
		scale := (n*sqx - sq*sx) / den
		off := (sx - scale*sq) / n // x ≈ scale*q + off, off = -min
		if scale <= 0 {
			continue
		}
		mn := float32(-off)
		if mn < 0 { // the grid must reach 0 or below: min >= 0
			mn = 0
		}
		if e := errOf(float32(scale), mn); e < best {
			best, bestS, bestM = e, float32(scale), mn
		}
	}
	return bestS, bestM
}

func abs(v float32) float32 { return float32(math.Abs(float64(v))) }

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }
