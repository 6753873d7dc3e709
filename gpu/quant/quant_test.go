package quant

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// Hand-built blocks decode to the values ggml's layouts define.
func TestDequantizeLayouts(t *testing.T) {
	one := F32ToF16(1)
	half := F32ToF16(0.5)

	q8 := make([]byte, 34)
	q8[0], q8[1] = byte(half), byte(half>>8)
	for i := 0; i < 32; i++ {
		q8[2+i] = byte(int8(i - 16))
	}
	got := make([]float32, 32)
	Dequantize(Q8_0, got, q8)
	for i, v := range got {
		if want := 0.5 * float32(i-16); v != want {
			t.Fatalf("Q8_0 weight %d = %v, want %v", i, v, want)
		}
	}

	q4 := make([]byte, 18)
	q4[0], q4[1] = byte(one), byte(one>>8)
	for i := 0; i < 16; i++ {
		q4[2+i] = byte(i) | byte(15-i)<<4 // weight i: i-8; weight 16+i: 7-i
	}
	Dequantize(Q4_0, got, q4)
	for i := 0; i < 16; i++ {
		if got[i] != float32(i-8) || got[16+i] != float32(7-i) {
			t.Fatalf("Q4_0 weights %d, %d = %v, %v; want %v, %v", i, 16+i, got[i], got[16+i], i-8, 7-i)
		}
	}

	// Q4_K: d = 1, dmin = 0.5; sub-block s has scale s+1 and min 2s (the
	// upper four use the split 6-bit encoding); nibble of weight i within
	// its sub-block is i % 16.
	var S, M [8]uint8
	for s := range S {
		S[s], M[s] = uint8(s+1)|uint8(s%2)<<5, uint8(2*s)|uint8(s/4)<<4
	}
	qk := make([]byte, 144)
	qk[0], qk[1] = byte(one), byte(one>>8)
	qk[2], qk[3] = byte(half), byte(half>>8)
	packScaleMin(qk[4:16], &S, &M)
	for j := 0; j < 4; j++ {
		for i := 0; i < 32; i++ {
			qk[16+32*j+i] = byte(i%16) | byte(15-i%16)<<4
		}
	}
	gk := make([]float32, 256)
	Dequantize(Q4_K, gk, qk)
	for s := 0; s < 8; s++ {
		for i := 0; i < 32; i++ {
			nib := i % 16
			if s%2 == 1 {
				nib = 15 - i%16
			}
			want := float32(S[s])*float32(nib) - 0.5*float32(M[s])
			if gk[32*s+i] != want {
				t.Fatalf("Q4_K sub-block %d weight %d = %v, want %v", s, i, gk[32*s+i], want)
			}
		}
	}
}

// Every 6-bit scale and min survives Q4_K's packing.
func TestScaleMinPacking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 1000; trial++ {
		var S, M [8]uint8
		for s := range S {
			S[s], M[s] = uint8(rng.IntN(64)), uint8(rng.IntN(64))
		}
		sc := make([]byte, 12)
		packScaleMin(sc, &S, &M)
		for s := 0; s < 8; s++ {
			if a, b := scaleMin(sc, s); a != S[s] || b != M[s] {
				t.Fatalf("sub-block %d: got (%d, %d), want (%d, %d)", s, a, b, S[s], M[s])
			}
		}
	}
}

// Quantization errors stay within each format's bound, on random data at
// several magnitudes (including ones whose scales are f16 subnormals) and
// on blocks of zeros and of one repeated value.
func TestQuantizeError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range Formats {
		for _, mag := range []float32{1e-6, 1e-3, 0.02, 1, 300} {
			n := 4 * 256
			x := make([]float32, n)
			for i := range x {
				x[i] = mag * float32(rng.NormFloat64())
			}
			x[5] = 0
			raw := make([]byte, n/f.BlockSize()*f.BlockBytes())
			if err := Quantize(f, raw, x); err != nil {
				t.Fatal(err)
			}
			y := make([]float32, n)
			Dequantize(f, y, raw)
			var se, ss float64
			for b := 0; b < n/32; b++ {
				var amax float32
				for _, v := range x[32*b : 32*b+32] {
					amax = max(amax, abs(v))
				}
				// A step of the grid plus f16 rounding of the scale.
				bound := map[Format]float32{Q8_0: amax/127*0.5 + amax*1e-3, Q4_0: amax / 8 * 1.01, Q4_K: 2 * amax / 15 * 1.1}[f]
				for i := 32 * b; i < 32*b+32; i++ {
					bi := bound
					if mag == 1e-6 { // the scale is an f16 subnormal or 0: at worst the weight flushes
						bi = abs(x[i]) + 16*6e-8
						if f == Q4_K { // ... or takes its sub-block's min alone
							bi = 2*amax + 16*6e-8
						}
					}
					if e := abs(y[i] - x[i]); e > bi {
						t.Fatalf("%v mag %g: weight %d = %g -> %g (error %g > %g)", f, mag, i, x[i], y[i], e, bi)
					}
					se += float64((y[i] - x[i]) * (y[i] - x[i]))
					ss += float64(x[i] * x[i])
				}
			}
			rel := math.Sqrt(se / ss)
			limit := map[Format]float64{Q8_0: 0.01, Q4_0: 0.15, Q4_K: 0.12}[f]
			if mag > 1e-6 && rel > limit {
				t.Errorf("%v mag %g: relative RMS error %.4f > %.2f", f, mag, rel, limit)
			}
		}
		for _, v := range []float32{0, 0.25, -3} {
			x := make([]float32, 256)
			for i := range x {
				x[i] = v
			}
			raw := make([]byte, 256/f.BlockSize()*f.BlockBytes())
			if err := Quantize(f, raw, x); err != nil {
				t.Fatal(err)
			}
			y := make([]float32, 256)
			Dequantize(f, y, raw)
			for i := range y {
				if abs(y[i]-v) > abs(v)*2e-3 {
					t.Fatalf("%v constant %v: weight %d decodes to %v", f, v, i, y[i])
				}
			}
		}
	}
}

func TestQuantizeRejects(t *testing.T) {
	for _, f := range Formats {
		x := make([]float32, f.BlockSize())
		raw := make([]byte, f.BlockBytes())
		x[3] = float32(math.NaN())
		if err := Quantize(f, raw, x); err == nil {
			t.Errorf("%v: NaN accepted", f)
		}
		x[3] = 1e30
		if err := Quantize(f, raw, x); err == nil {
			t.Errorf("%v: a scale beyond f16 accepted", f)
		}
		if err := Quantize(f, raw, x[:5]); err == nil {
			t.Errorf("%v: a partial block accepted", f)
		}
		if _, err := f.RowBytes(f.BlockSize() + 1); err == nil {
			t.Errorf("%v: a row that is not whole blocks accepted", f)
		}
	}
	if _, err := Parse("q5_k"); err == nil || !contains(err.Error(), "q5_k") {
		t.Errorf("Parse(q5_k): %v, want an error naming it", err)
	}
	for _, f := range Formats {
		if g, err := Parse(f.String()); err != nil || g != f {
			t.Errorf("Parse(%v) = %v, %v", f, g, err)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestQ4_0ScaleSearch: the encoder's scale search never leaves a block
// worse than the plain rule (d = -m/8 for the value m of largest
// magnitude) nor any weight further off than the plain rule's worst case,
// and it lowers the error of Gaussian weights as a whole.
func TestQ4_0ScaleSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	const blocks = 2048
	x := make([]float32, 32*blocks)
	for i := range x {
		x[i] = 0.02 * float32(rng.NormFloat64())
	}
	raw := make([]byte, blocks*Q4_0.BlockBytes())
	if err := Quantize(Q4_0, raw, x); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(x))
	Dequantize(Q4_0, y, raw)
	var seNew, sePlain float64
	for b := range blocks {
		in := x[32*b : 32*b+32]
		var amax, m float32
		for _, v := range in {
			if abs(v) > amax {
				amax, m = abs(v), v
			}
		}
		d := RoundF16(m / -8)
		var bNew, bPlain, worstPlain float64
		for _, v := range in {
			p := float64(d*float32(clamp(int(math.RoundToEven(float64(v/d))), -8, 7)) - v)
			bPlain += p * p
			worstPlain = max(worstPlain, math.Abs(p))
		}
		for i, v := range in {
			r := float64(y[32*b+i] - v)
			bNew += r * r
			if math.Abs(r) > max(worstPlain, float64(amax)/8)*(1+1e-6) {
				t.Fatalf("block %d weight %d: error %g beyond the plain rule's worst case (%g, |m|/8 = %g)", b, i, r, worstPlain, amax/8)
			}
		}
		if bNew > bPlain*(1+1e-6) {
			t.Fatalf("block %d: squared error %g, the plain rule's %g", b, bNew, bPlain)
		}
		seNew += bNew
		sePlain += bPlain
	}
	if !(seNew < 0.95*sePlain) {
		t.Fatalf("scale search: squared error %g against the plain rule's %g (want at least 5%% lower)", seNew, sePlain)
	}
	t.Logf("relative squared error: %.4f of the plain rule's", seNew/sePlain)
}

// TestQuantizeParallel: a tensor large enough for several goroutines
// encodes to the bytes of one goroutine's block-by-block pass, for every
// format; with bad blocks in two goroutines' ranges the error names the
// first.
func TestQuantizeParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range []Format{Q8_0, Q4_0, Q4_K} {
		nb := 4 * quantChunkMin // at least 4 ranges when GOMAXPROCS allows; 2 on a 2-core machine
		src := make([]float32, nb*f.BlockSize())
		for i := range src {
			src[i] = float32(rng.NormFloat64() * 0.02)
		}
		got := make([]byte, nb*f.BlockBytes())
		if err := Quantize(f, got, src); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(got))
		if err := quantizeBlocks(f, want, src, 0, nb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v: the parallel encoding differs from one pass", f)
		}
		bad := []int{nb - 3, nb/4 + 1} // the later range's first
		for _, b := range bad {
			src[b*f.BlockSize()+5] = float32(math.NaN())
		}
		err := Quantize(f, got, src)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("block %d:", bad[1])) {
			t.Errorf("%v: bad blocks %v: error %v, want block %d named", f, bad, err, bad[1])
		}
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Log("one processor: Quantize ran one goroutine")
	}
}
