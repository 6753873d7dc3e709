package conformance

import (
	"math"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/quant"
)

func init() {
	register("MatMulQuant", testMatMulQuant)
}

// quantCases: K of one block, of an odd number of blocks (a row's scales
// end in half a word), and GPT-2's widths; N and M of partial register
// blocks, tiles, mat-vec groups, texture blocks of 32 rows and every M of
// a decode batch from 1 to 9.
var quantCases = []struct{ m, k, n int }{
	{1, 32, 1},
	{2, 96, 130},
	{3, 256, 129},
	{8, 768, 67},
	{9, 512, 300},
	{70, 256, 65},
	{130, 768, 127},
	{1, 3072, 200},
	{1, 768, 129}, // M = 1: the texture mat-vec on CPU adapters
	{1, 512, 67},
	// M = 2..16: the multi-row texture mat-vec (8-row blocks) on CPU
	// adapters, with partial row blocks (M = 9, 12) and N off the 64-column
	// workgroup and 8-column invocation blocks.
	{2, 64, 33},
	{3, 512, 70},
	{4, 256, 67},
	{5, 96, 129},
	{6, 768, 1},
	{7, 256, 300},
	{9, 512, 65},
	{12, 256, 77},
	{16, 96, 64},
}

// RandomQuantBlocks returns n random blocks of format f: random values
// everywhere, and scales drawn from a mix that includes the extremes a
// kernel must decode exactly: zero, negative, f16 subnormals (down to
// 2^-24), the largest finite half (65504) and ordinary magnitudes.
func (p *Pair) RandomQuantBlocks(f quant.Format, n int) []byte {
	raw := make([]byte, n*f.BlockBytes())
	for i := range raw {
		raw[i] = byte(p.Rng.IntN(256))
	}
	scale := func() uint16 {
		var h uint16
		switch p.Rng.IntN(8) {
		case 0:
			h = 0
		case 1:
			h = uint16(1 + p.Rng.IntN(0x3ff)) // subnormal
		case 2:
			h = uint16(0x7800 + p.Rng.IntN(0x400)) // 32768 .. 65504
		case 3:
			h = 0x7bff // 65504
		default:
			h = gpu.F32ToF16(float32(math.Exp(p.Rng.NormFloat64()*2 - 4)))
		}
		if p.Rng.IntN(2) == 0 {
			h |= 0x8000
		}
		return h
	}
	put := func(b []byte, h uint16) { b[0], b[1] = byte(h), byte(h>>8) }
	for b := 0; b < n; b++ {
		blk := raw[b*f.BlockBytes():]
		put(blk, scale())
		if f == quant.Q4_K {
			put(blk[2:], scale())
		}
	}
	return raw
}

// testMatMulQuant checks the quantized matmul kernels of every family
// against the reference (dequantize exactly, dot in float64) on random
// blocks with extreme scales, and the dequantizing read-back.
//
// (Over 80 lines: every case under every kernel variant, then the
// read-back, each with its own failure message.)
func testMatMulQuant(t T, p *Pair) {
	variants, force, restore := matMulVariants(p)
	defer restore()
	for ci, c := range quantCases {
		for _, f := range quant.Formats {
			if c.k%f.BlockSize() != 0 {
				continue
			}
			dt := gpu.QuantDType(f)
			raw := p.RandomQuantBlocks(f, c.n*c.k/f.BlockSize())
			wv := make([]float32, c.n*c.k)
			quant.Dequantize(f, wv, raw)
			w := p.Upload(t, dt, raw, c.n, c.k)
			// Both backends read back exactly the weights the blocks encode.
			got, want := p.ReadBoth(t, w)
			if !slices.Equal(got, wv) || !slices.Equal(want, wv) {
				t.Errorf("%v %dx%d: read back differs from the blocks' values", dt, c.n, c.k)
			}
			xv := p.Randn(c.m*c.k, 1)
			x := p.Upload(t, gpu.F32, xv, c.m, c.k)
			var b Tensors
			withBias := ci%2 == 0
			bv := make([]float32, c.n)
			if withBias {
				bv = p.Randn(c.n, 1)
				b = p.Upload(t, gpu.F32, bv, c.n)
			}
			ref := p.Poisoned(t, gpu.F32, c.m, c.n)
			p.Ref.MatMul(ref.Ref, x.Ref, w.Ref, b.Ref)
			wantV, err := p.Ref.ReadF32(ref.Ref)
			if err != nil {
				t.Fatalf("%v", err)
			}
			// A float32 sum of K products is within K·2⁻²³ of the exact
			// sum of their magnitudes (Wilkinson's bound; the bias is one
			// more term, whose add may round too): rigorous, so
			// extreme scales cannot make the test flaky, and still far
			// below what a misplaced weight or scale gives. (The texture
			// mat-vecs sum a block's raw values, then scale, and add the
			// offset times the block's sum of x: for Q4_0 and Q4_K the two
			// terms can cancel, so there the bound is a margin the error
			// stays far inside on random blocks, not a proof.)
			bound := make([]float64, c.m*c.n)
			for i := 0; i < c.m; i++ {
				for j := 0; j < c.n; j++ {
					s := math.Abs(float64(bv[j]))
					for k := 0; k < c.k; k++ {
						s += math.Abs(float64(xv[i*c.k+k]) * float64(wv[j*c.k+k]))
					}
					bound[i*c.n+j] = float64(c.k+2)*math.Ldexp(1, -23)*s + 1e-30
				}
			}
			for _, v := range variants {
				if skipVariant(v, c.m) {
					continue
				}
				force(v)
				d := p.Poisoned(t, gpu.F32, c.m, c.n)
				p.Got.MatMul(d.Got, x.Got, w.Got, b.Got)
				got, err := p.Got.ReadF32(d.Got)
				if err != nil {
					t.Fatalf("%s read: %v", p.Got.Name(), err)
				}
				bad, worst := 0, -1
				for i := range got {
					e := math.Abs(float64(got[i]) - float64(wantV[i]))
					if !(e <= bound[i]) { // NaN fails too
						bad++
						if worst < 0 {
							worst = i
						}
					}
				}
				if bad > 0 {
					t.Errorf("%s M=%d K=%d N=%d w %v bias=%v: %d of %d outputs off, first [%d] got %g want %g (bound %g)",
						v, c.m, c.k, c.n, dt, withBias, bad, len(got), worst, got[worst], wantV[worst], bound[worst])
				}
				p.Free(d)
			}
			p.Free(x, w, ref)
			if withBias {
				p.Free(b)
			}
		}
	}
	Sub(t, "bad input", func(t T) { testQuantBadInput(t, p) })
}

// testQuantBadInput: rows that are not whole blocks, and blocks of the
// wrong size, are errors on both backends; []float32 written into a
// quantized tensor is quantized as quant.Quantize does.
func testQuantBadInput(t T, p *Pair) {
	for _, b := range []gpu.Backend{p.Ref, p.Got} {
		for _, f := range quant.Formats {
			dt := gpu.QuantDType(f)
			if _, err := b.Alloc(dt, 4, f.BlockSize()+16); err == nil || !strings.Contains(err.Error(), "whole number of blocks") {
				t.Errorf("%s: Alloc %v with a partial block: %v", b.Name(), dt, err)
			}
			w := gpu.Must(b.Alloc(dt, 2, f.BlockSize()))
			if err := b.Write(w, make([]byte, 2*f.BlockBytes()-1)); err == nil {
				t.Errorf("%s: Write %v accepted a short block", b.Name(), dt)
			}
			vals := p.Randn(2*f.BlockSize(), 1)
			if err := b.Write(w, vals); err != nil {
				t.Fatalf("%s: Write %v []float32: %v", b.Name(), dt, err)
			}
			raw := make([]byte, 2*f.BlockBytes())
			if err := quant.Quantize(f, raw, vals); err != nil {
				t.Fatalf("%v", err)
			}
			want := make([]float32, len(vals))
			quant.Dequantize(f, want, raw)
			got, err := b.ReadF32(w)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: %v written as []float32 reads back %v, want the quantized values (%v)", b.Name(), dt, got[:4], err)
			}
			b.Free(w)
		}
	}
}
