package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/ref"
)

func selfcheckCmd() *cobra.Command {
	var seed uint64
	var profile bool
	c := &cobra.Command{
		Use:   "selfcheck",
		Short: "Run every WGSL kernel on the adapter at GPT-2 sizes and compare with the plain-Go reference",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer recovered(&err)
			d, err := gpu.Open(gpu.Options{Adapter: deviceFlag})
			if err != nil {
				return err
			}
			defer d.Close()
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			w := gpu.NewWebGPU(d)
			fmt.Printf("self-check on %s (matmul variant %s, seed %d)\n", d, w.MatMulVariant, seed)
			if profile {
				if err := w.StartProfile(); err != nil {
					return err
				}
			}
			checkErr := selfcheck(w, seed)
			if profile {
				prof, err := w.StopProfile()
				if err != nil {
					return err
				}
				fmt.Println("GPU time per kernel (timestamp queries):")
				for _, k := range prof {
					fmt.Printf("  %-24s %4d calls %10.3f ms\n", k.Kernel, k.Calls, float64(k.Total.Microseconds())/1000)
				}
			}
			return checkErr
		},
	}
	c.Flags().Uint64Var(&seed, "seed", 0, "random seed (0: from the clock)")
	c.Flags().BoolVar(&profile, "profile", true, "print the GPU time of each kernel from timestamp queries")
	return c
}

// checker runs one op on the reference and on the GPU with the same inputs.
type checker struct {
	ref, gpu gpu.Backend
	rng      *rand.Rand
	fails    int
}

type pair struct{ r, g gpu.Tensor }

func (c *checker) up(dt gpu.DType, data any, shape ...int) pair {
	r := gpu.Must(c.ref.Alloc(dt, shape...))
	g := gpu.Must(c.gpu.Alloc(dt, shape...))
	if err := c.ref.Write(r, data); err != nil {
		panic(err)
	}
	if err := c.gpu.Write(g, data); err != nil {
		panic(err)
	}
	return pair{r, g}
}

func (c *checker) randn(n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(c.rng.NormFloat64() * std)
	}
	return v
}

func (c *checker) ints(n, lo, hi int) []int32 {
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(lo + c.rng.IntN(hi-lo))
	}
	return v
}

func (c *checker) out(dt gpu.DType, shape ...int) pair {
	n := gpu.Numel(shape)
	if dt == gpu.I32 {
		return c.up(dt, make([]int32, n), shape...)
	}
	nan := make([]float32, n)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	return c.up(dt, nan, shape...)
}

// check runs op on both backends and compares the output.
func (c *checker) check(name string, out pair, atol, rtol float64, op func(b gpu.Backend, sel func(pair) gpu.Tensor)) {
	op(c.ref, func(p pair) gpu.Tensor { return p.r })
	t0 := time.Now()
	op(c.gpu, func(p pair) gpu.Tensor { return p.g })
	var err error
	if out.r.DType() == gpu.I32 {
		var got, want []int32
		if got, err = c.gpu.ReadI32(out.g); err == nil {
			want, _ = c.ref.ReadI32(out.r)
			for i := range got {
				if got[i] != want[i] {
					err = fmt.Errorf("row %d: got %d, want %d", i, got[i], want[i])
					break
				}
			}
		}
	} else {
		var got, want []float32
		if got, err = c.gpu.ReadF32(out.g); err == nil {
			want, _ = c.ref.ReadF32(out.r)
			err = conformance.AllClose(got, want, atol, rtol)
		}
	}
	status := "ok"
	if err != nil {
		status = "FAIL: " + err.Error()
		c.fails++
	}
	fmt.Printf("  %-40s %8.1f ms  %s\n", name, float64(time.Since(t0).Microseconds())/1000, status)
}

func selfcheck(w *gpu.WebGPU, seed uint64) error {
	c := &checker{ref: ref.New(), gpu: w, rng: rand.New(rand.NewPCG(seed, 1))}
	const B, T, C, H, V = 4, 16, 768, 12, 50257
	M := B * T
	x := c.up(gpu.F32, c.randn(M*C, 1), B, T, C)
	g := c.up(gpu.F32, c.randn(C, 1), C)
	bb := c.up(gpu.F32, c.randn(C, 1), C)
	o := c.out(gpu.F32, B, T, C)
	c.check("layernorm (64x768)", o, 1e-4, 1e-4, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.LayerNorm(s(o), s(x), s(g), s(bb), 1e-5)
	})
	o2 := c.out(gpu.F32, B, T, C)
	c.check("gelu (64x768)", o2, 1e-5, 1e-4, func(b gpu.Backend, s func(pair) gpu.Tensor) { b.GELU(s(o2), s(x)) })
	o3 := c.out(gpu.F32, B, T, C)
	c.check("add (64x768)", o3, 1e-5, 1e-5, func(b gpu.Backend, s func(pair) gpu.Tensor) { b.Add(s(o3), s(x), s(o2)) })
	for _, dt := range []gpu.DType{gpu.F32, gpu.F16} {
		wt := c.up(dt, c.randn(3*C*C, 0.02), 3*C, C)
		bias := c.up(gpu.F32, c.randn(3*C, 0.02), 3*C)
		qkv := c.out(gpu.F32, B, T, 3*C)
		c.check(fmt.Sprintf("matmul %v (64x768x2304)", dt), qkv, 1e-4, 1e-3, func(b gpu.Backend, s func(pair) gpu.Tensor) {
			b.MatMul(s(qkv), s(x), s(wt), s(bias))
		})
		x1 := c.up(gpu.F32, c.randn(C, 1), 1, C)
		q1 := c.out(gpu.F32, 1, 3*C)
		c.check(fmt.Sprintf("matvec %v (1x768x2304)", dt), q1, 1e-4, 1e-3, func(b gpu.Backend, s func(pair) gpu.Tensor) {
			b.MatMul(s(q1), s(x1), s(wt), s(bias))
		})
	}
	tmax := 32
	qkv := c.up(gpu.F32, c.randn(M*3*C, 1), B, T, 3*C)
	start := c.up(gpu.I32, []int32{0, 0, 0, 0}, B)
	qlen := c.up(gpu.I32, []int32{16, 9, 1, 13}, B)
	kc := c.up(gpu.F32, make([]float32, B*tmax*C), B, tmax, C)
	vc := c.up(gpu.F32, make([]float32, B*tmax*C), B, tmax, C)
	c.check("kv store (4 ragged prompts)", kc, 0, 0, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.KVStore(s(kc), s(vc), s(qkv), s(start), s(qlen))
	})
	att := c.out(gpu.F32, B, T, C)
	c.check("attention prefill (4x16, 12 heads)", att, 1e-5, 1e-4, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.Attention(s(att), s(qkv), s(kc), s(vc), s(start), s(qlen), H)
	})
	wte := c.up(gpu.F16, c.randn(V*C, 0.02), V, C)
	wpe := c.up(gpu.F16, c.randn(1024*C, 0.01), 1024, C)
	tok := c.up(gpu.I32, c.ints(M, 0, V), M)
	pos := c.up(gpu.I32, c.ints(M, 0, 1024), M)
	emb := c.out(gpu.F32, M, C)
	c.check("embed f16 (64 tokens)", emb, 0, 0, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.Embed(s(emb), s(wte), s(wpe), s(tok), s(pos))
	})
	logits := c.up(gpu.F32, c.randn(8*V, 3), 8, V)
	ls := c.out(gpu.F32, 8, V)
	c.check("log-softmax (8x50257)", ls, 1e-4, 1e-5, func(b gpu.Backend, s func(pair) gpu.Tensor) { b.LogSoftmax(s(ls), s(logits)) })
	tgt := c.up(gpu.I32, append(c.ints(7, 0, V), -1), 8)
	ce := c.out(gpu.F32, 8)
	c.check("cross-entropy (8x50257)", ce, 1e-4, 1e-5, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.CrossEntropy(s(ce), s(logits), s(tgt))
	})
	am := c.out(gpu.I32, 8)
	c.check("argmax (8x50257)", am, 0, 0, func(b gpu.Backend, s func(pair) gpu.Tensor) { b.Argmax(s(am), s(logits)) })
	u := make([]float32, 8)
	for i := range u {
		u[i] = float32(c.rng.Float64())
	}
	un := c.up(gpu.F32, u, 8)
	sm := c.out(gpu.I32, 8)
	c.check("sample T=0.8 top-k 40 top-p 0.95", sm, 0, 0, func(b gpu.Backend, s func(pair) gpu.Tensor) {
		b.Sample(s(sm), s(logits), s(un), gpu.SampleParams{Temperature: 0.8, TopK: 40, TopP: 0.95})
	})
	if c.fails > 0 {
		return fmt.Errorf("self-check: %d of the kernels disagree with the reference", c.fails)
	}
	fmt.Println("self-check passed: every kernel agrees with the reference")
	return nil
}
