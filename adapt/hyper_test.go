package adapt

import (
	"fmt"
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
)

// TestHyperForward runs the hyper-network on both backends (inference and
// with dropout masks) and then applies its factors through Logits.
func TestHyperForward(t *testing.T) {
	p, ro, go_ := pair(t)
	for _, c := range []struct {
		cfg HyperConfig
		k   int
	}{
		{HyperConfig{C: 3, V: 5, Rank: 1, Alpha: 1, Hidden: []int{64, 32}, Dropout: 0.5}, 1},
		{HyperConfig{C: 64, V: 129, Rank: 4, Alpha: 0.5, Hidden: []int{3}, Dropout: 0.25}, 3},
		{HyperConfig{C: 64, V: 5, Rank: 16, Alpha: 2, Hidden: []int{64, 32}, Dropout: 0.5}, 8},
		{HyperConfig{C: 768, V: 50257, Rank: 4, Alpha: 1, Hidden: []int{64, 32}, Dropout: 0.5}, 3},
	} {
		cfg, k := c.cfg, c.k
		host := InitHyper(cfg, p.Rng.Uint64())
		nr, err := UploadHyper(p.Ref, cfg, host)
		if err != nil {
			t.Fatal(err)
		}
		ng, err := UploadHyper(p.Got, cfg, host)
		if err != nil {
			t.Fatal(err)
		}
		feats := p.Upload(t, gpu.F32, p.Randn(k*cfg.C, 1/math.Sqrt(float64(cfg.C))), k, cfg.C)
		masks := DropoutMasks(cfg, k, p.Rng)
		var mr, mg []gpu.Tensor
		for l, m := range masks {
			x := p.Upload(t, gpu.F32, m, k, cfg.Hidden[l])
			mr, mg = append(mr, x.Ref), append(mg, x.Got)
		}
		for _, train := range []bool{false, true} {
			what := fmt.Sprintf("%+v K=%d dropout=%v", cfg, k, train)
			out := p.Poisoned(t, gpu.F32, k, cfg.OutDim())
			var a, b []gpu.Tensor
			if train {
				a, b = mr, mg
			}
			if err := nr.Forward(ro, out.Ref, feats.Ref, a); err != nil {
				t.Fatal(err)
			}
			if err := ng.Forward(go_, out.Got, feats.Got, b); err != nil {
				t.Fatal(err)
			}
			p.Close(t, "hyper "+what, out, 1e-5*math.Sqrt(64), 1e-5)
			if !train && cfg.V < 1000 {
				// The generated factors drive the fused kernel.
				m := 37
				h := p.Upload(t, gpu.F32, p.Randn(m*cfg.C, 1), m, cfg.C)
				w := p.Upload(t, gpu.F16, p.Randn(cfg.V*cfg.C, 1/math.Sqrt(float64(cfg.C))), cfg.V, cfg.C)
				cl := p.Upload(t, gpu.I32, p.Ints(m, 0, k), m)
				d := p.Poisoned(t, gpu.F32, m, cfg.V)
				if err := ro.Logits(d.Ref, h.Ref, w.Ref, nil, nr.Factors(out.Ref), cl.Ref, cfg.Alpha); err != nil {
					t.Fatal(err)
				}
				if err := go_.Logits(d.Got, h.Got, w.Got, nil, ng.Factors(out.Got), cl.Got, cfg.Alpha); err != nil {
					t.Fatal(err)
				}
				// The factors themselves differ by float rounding between the
				// backends, hence the looser tolerance.
				p.Close(t, "logits from "+what, d, 1e-4*math.Sqrt(float64(cfg.C)), 1e-4)
				p.Free(h, w, cl, d)
			}
			p.Free(out)
		}
		for i := range mr {
			p.Free(conformance.Tensors{Ref: mr[i], Got: mg[i]})
		}
		p.Free(feats)
		nr.Free(p.Ref)
		ng.Free(p.Got)
	}
}

// TestStaticAdapters applies static LoRA (K = 1, no cluster tensor) and
// per-domain experts (rows pick their domain) on both backends.
func TestStaticAdapters(t *testing.T) {
	p, ro, go_ := pair(t)
	const c, v, r, m = 64, 129, 4, 40
	for _, k := range []int{1, 3} {
		host := StaticSpec(k, r, c, v)
		host[0].Data = p.Randn(k*r*c, 1/math.Sqrt(c))
		host[1].Data = p.Randn(k*v*r, 1/math.Sqrt(r))
		sr, err := UploadStatic(p.Ref, k, r, c, v, 1.5, host)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := UploadStatic(p.Got, k, r, c, v, 1.5, host)
		if err != nil {
			t.Fatal(err)
		}
		h := p.Upload(t, gpu.F32, p.Randn(m*c, 1), m, c)
		w := p.Upload(t, gpu.F32, p.Randn(v*c, 1/math.Sqrt(c)), v, c)
		var cl conformance.Tensors
		if k > 1 {
			cl = p.Upload(t, gpu.I32, p.Ints(m, 0, k), m)
		}
		d := p.Poisoned(t, gpu.F32, m, v)
		if err := ro.Logits(d.Ref, h.Ref, w.Ref, nil, sr.Factors(), cl.Ref, sr.Alpha); err != nil {
			t.Fatal(err)
		}
		if err := go_.Logits(d.Got, h.Got, w.Got, nil, sg.Factors(), cl.Got, sg.Alpha); err != nil {
			t.Fatal(err)
		}
		p.Close(t, fmt.Sprintf("static K=%d", k), d, 1e-4, 1e-5)
		p.Free(h, w, d)
		if k > 1 {
			p.Free(cl)
		}
		sr.Free(p.Ref)
		sg.Free(p.Got)
	}
}
