package tensorfile

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
)

// f16Value computes the value of an F16 bit pattern from the definition
// (sign, 5-bit exponent with bias 15, 10-bit fraction) in float64.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return sign * math.Inf(1)
	case e == 0x1f:
		return math.NaN()
	case e == 0:
		return sign * math.Ldexp(m, -24) // 0.m * 2^-14
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

func TestF16KnownPatterns(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},
		{0x0400, math.Ldexp(1, -14)},     // smallest normal
		{0x0001, math.Ldexp(1, -24)},     // smallest subnormal
		{0x03ff, math.Ldexp(1023, -24)},  // largest subnormal
		{0x8001, -math.Ldexp(1, -24)},    // negative subnormal
		{0x7c00, math.Inf(1)},            // +Inf
		{0xfc00, math.Inf(-1)},           // -Inf
		{0x3bff, 1 - math.Ldexp(1, -11)}, // largest below one
		{0x3c01, 1 + math.Ldexp(1, -10)}, // smallest above one
		{0x0200, math.Ldexp(1, -15)},     // a subnormal power of two
		{0x5640, 100},                    // 1.5625 * 64
		{0xd640, -100},
		{0x7800, 32768},
		{0x0155, math.Ldexp(0x155, -24)},
		{0x7bfe, 65472},
		{0x4248, 3.140625},
		{0xb800, -0.5},
		{0x2e66, 0.0999755859375},
		{0x03fe, math.Ldexp(1022, -24)},
		{0x0002, math.Ldexp(2, -24)},
		{0x3c00 | 0x8000, -1},
		{0x7bff | 0x8000, -65504},
		{0x0400 | 0x8000, -math.Ldexp(1, -14)},
	} {
		if got := float64(F16ToF32(c.h)); got != c.want || f16Value(c.h) != c.want {
			t.Errorf("F16ToF32(%#04x) = %v (definition %v), want %v", c.h, got, f16Value(c.h), c.want)
		}
		if got := F32ToF16(float32(c.want)); got != c.h {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.want, got, c.h)
		}
	}
	if b := math.Float32bits(F16ToF32(0x8000)); b != 0x80000000 {
		t.Errorf("F16ToF32(-0) bits = %#08x, want 0x80000000", b)
	}
	if h := F32ToF16(float32(math.Copysign(0, -1))); h != 0x8000 {
		t.Errorf("F32ToF16(-0) = %#04x, want 0x8000", h)
	}
	for _, h := range []uint16{0x7e00, 0x7c01, 0xfe00, 0x7fff} {
		if v := F16ToF32(h); !math.IsNaN(float64(v)) {
			t.Errorf("F16ToF32(%#04x) = %v, want NaN", h, v)
		}
	}
	if h := F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
	// A NaN whose payload lies only in the low 13 bits must stay a NaN.
	if h := F32ToF16(math.Float32frombits(0x7f800001)); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN 0x7f800001) = %#04x, not a NaN", h)
	}
}

// TestF16Exhaustive widens every F16 pattern, checks it against the
// definition and that narrowing gives the same pattern back.
func TestF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := float64(F16ToF32(h)), f16Value(h)
		if math.IsNaN(want) != math.IsNaN(got) || (!math.IsNaN(want) && got != want) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
		if back := F32ToF16(F16ToF32(h)); back != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// refF32ToF16 rounds x to the nearest non-negative F16 pattern by searching
// all of them, ties to the pattern with an even last bit. 0x7c00 stands for
// 2^16 there, the value the exponent range would give it, so that exactly the
// values ties-to-even would round past 65504 become Inf.
func refF32ToF16(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	vals := f16Table()
	i := sort.SearchFloat64s(vals, x) // first value >= x
	switch {
	case i == len(vals):
		return sign | 0x7c00
	case vals[i] == x || i == 0:
		return sign | uint16(i)
	}
	lo, hi := vals[i-1], vals[i]
	switch {
	case x-lo < hi-x:
		return sign | uint16(i-1)
	case x-lo > hi-x:
		return sign | uint16(i)
	case (i-1)%2 == 0:
		return sign | uint16(i-1)
	}
	return sign | uint16(i)
}

// f16Table holds the values of the patterns 0..0x7c00, ascending.
var f16Table = sync.OnceValue(func() []float64 {
	vals := make([]float64, 0x7c01)
	for h := range vals {
		vals[h] = f16Value(uint16(h))
	}
	vals[0x7c00] = 65536
	return vals
})

func TestF32ToF16Rounding(t *testing.T) {
	p := math.Ldexp
	for _, c := range []struct {
		x    float64
		want uint16
	}{
		{1 + p(1, -11), 0x3c00},             // tie between 1 and 1+2^-10: even is 1
		{1 + 3*p(1, -11), 0x3c02},           // tie: even is 1+2^-9
		{1 + p(1, -11) + p(1, -20), 0x3c01}, // just above the tie
		{65519, 0x7bff},                     // below the midpoint to 2^16
		{65520, 0x7c00},                     // the midpoint rounds to even: Inf
		{1e6, 0x7c00},                       // overflow
		{-1e6, 0xfc00},
		{p(1, -25), 0x0000},             // half the smallest subnormal: tie to 0
		{p(1, -25) + p(1, -40), 0x0001}, // just above it
		{3 * p(1, -25), 0x0002},         // tie between 1 and 2 subnormal units
		{5 * p(1, -25), 0x0002},         // tie between 2 and 3: even is 2
		{p(1, -14) - p(1, -25), 0x0400}, // tie between largest subnormal and smallest normal
		{p(1, -30), 0x0000},             // underflow
		{-p(1, -30), 0x8000},            // underflow keeps the sign
		{2049, 0x6800},                  // tie between 2048 and 2050: even is 2048
		{2051, 0x6802},                  // tie between 2050 and 2052: even is 2052
		{float64(math.SmallestNonzeroFloat32), 0x0000},
	} {
		if ref := refF32ToF16(c.x); ref != c.want {
			t.Fatalf("reference(%g) = %#04x, test table says %#04x", c.x, ref, c.want)
		}
		if got := F32ToF16(float32(c.x)); got != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		// Bias toward the F16 range so every path gets plenty of samples.
		b := rng.Uint32()
		if rng.IntN(2) == 0 {
			b = b&0x80000000 | (uint32(rng.IntN(45)+97) << 23) | b&0x7fffff
		}
		x := math.Float32frombits(b)
		if math.IsNaN(float64(x)) {
			continue
		}
		if got, want := F32ToF16(x), refF32ToF16(float64(x)); got != want {
			t.Fatalf("F32ToF16(%g = %#08x) = %#04x, reference %#04x", x, b, got, want)
		}
	}
}

func TestBF16(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float64
	}{
		{0x0000, 0},
		{0x3f80, 1},
		{0xbf80, -1},
		{0x4049, 3.140625},
		{0x7f7f, math.Ldexp(255, 120)}, // largest finite: (2 - 2^-7) * 2^127
		{0x0080, math.Ldexp(1, -126)},  // smallest normal
		{0x0001, math.Ldexp(1, -133)},  // smallest subnormal
		{0x7f80, math.Inf(1)},
		{0xff80, math.Inf(-1)},
	} {
		if got := float64(BF16ToF32(c.h)); got != c.want {
			t.Errorf("BF16ToF32(%#04x) = %v, want %v", c.h, got, c.want)
		}
		if got := F32ToBF16(float32(c.want)); got != c.h {
			t.Errorf("F32ToBF16(%v) = %#04x, want %#04x", c.want, got, c.h)
		}
	}
	for i := range 1 << 16 {
		if back := F32ToBF16(BF16ToF32(uint16(i))); back != uint16(i) {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", i, back)
		}
	}
	// Ties and rounding: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
	p := math.Ldexp
	for _, c := range []struct {
		x    float64
		want uint16
	}{
		{1 + p(1, -8), 0x3f80},
		{1 + 3*p(1, -8), 0x3f82},
		{1 + p(1, -8) + p(1, -20), 0x3f81},
		{p(255.5, 120), 0x7f80}, // the midpoint above the largest finite: Inf
		{-p(255.5, 120), 0xff80},
	} {
		if got := F32ToBF16(float32(c.x)); got != c.want {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	if h := F32ToBF16(math.Float32frombits(0x7f800001)); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("F32ToBF16(NaN 0x7f800001) = %#04x, not a NaN", h)
	}
	// Random patterns against a reference that compares the two candidates.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := rng.Uint32()
		x := math.Float32frombits(b)
		if math.IsNaN(float64(x)) {
			continue
		}
		lo := uint16(b >> 16)
		val := func(h uint16) float64 {
			if h&0x7fff == 0x7f80 { // Inf stands for 2^128 in the rounding
				return math.Copysign(math.Ldexp(1, 128), float64(x))
			}
			return float64(BF16ToF32(h))
		}
		dl, dh := math.Abs(float64(x)-val(lo)), math.Abs(val(lo+1)-float64(x))
		want := lo
		if dh < dl || (dh == dl && lo%2 == 1) {
			want = lo + 1
		}
		if lo&0x7fff >= 0x7f80 { // already Inf
			want = lo
		}
		if got := F32ToBF16(x); got != want {
			t.Fatalf("F32ToBF16(%g = %#08x) = %#04x, want %#04x", x, b, got, want)
		}
	}
}
