package tensorfile

import "math"

// IEEE 754 binary16 (F16): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa
// bits. bfloat16 (BF16): the top 16 bits of a binary32, 8 exponent bits
// (bias 127), 7 mantissa bits. Every F16 and BF16 value is exactly
// representable as a float32, so widening is exact; narrowing rounds to
// nearest, ties to even, overflows to ±Inf and keeps NaN a NaN. For every bit
// pattern h, F32ToF16(F16ToF32(h)) == h and likewise for BF16, NaN payloads
// included.

// F16ToF32 widens an F16 bit pattern to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN: keep the payload in the top mantissa bits
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // ±0
		return math.Float32frombits(sign)
	}
	// Subnormal: value = mant * 2^-24. Shift the leading 1 up to the implicit
	// bit position; each shift lowers the exponent by one.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// F32ToF16 narrows a float32 to the nearest F16 bit pattern, ties to even.
// Values beyond the F16 range (|x| >= 65520) become ±Inf; NaN stays NaN
// (its top 10 payload bits are kept, and a payload that would vanish becomes
// the quiet bit).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		m := uint16(mant >> 13)
		if m == 0 {
			m = 0x200
		}
		return sign | 0x7c00 | m
	}
	e := exp - 127 + 15 // the F16 biased exponent if the value is normal there
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// F16 subnormal or zero: the result mantissa is |x| / 2^-24 rounded.
		// |x| = full * 2^(exp-150), so the mantissa is full >> (126-exp).
		full := mant
		if exp != 0 {
			full |= 0x800000
		} else {
			exp = 1 // f32 subnormals have the exponent of exp == 1
		}
		shift := uint32(126 - exp)
		if shift > 24 { // below half the smallest subnormal: rounds to zero
			return sign
		}
		return sign | uint16(roundShift(full, shift))
	}
	// Normal: drop 13 mantissa bits. A carry out of the mantissa correctly
	// bumps the exponent, and from the largest finite value it gives Inf.
	v := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && v&1 == 1) {
		v++
	}
	return sign | uint16(v)
}

// roundShift returns x >> s rounded to nearest, ties to even (1 <= s <= 31).
func roundShift(x, s uint32) uint32 {
	q := x >> s
	rem := x & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// BF16ToF32 widens a BF16 bit pattern to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 narrows a float32 to the nearest BF16 bit pattern, ties to even.
// Overflow gives ±Inf; NaN stays NaN (top 7 payload bits kept, and a payload
// that would vanish becomes the quiet bit).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		h := uint16(b >> 16)
		if h&0x7f == 0 {
			h |= 0x40
		}
		return h
	}
	// Adding 0x7fff plus the lowest kept bit rounds to nearest even; a carry
	// into the exponent is the correct rounding, up to Inf.
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}
