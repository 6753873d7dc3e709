package adapt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// sitesDecodeCfg has rows of 256 and 1024 weights: whole blocks of every
// quantized format.
var sitesDecodeCfg = model.Config{VocabSize: 83, NCtx: 24, NEmbd: 256, NHead: 4, NLayer: 1, LNEps: 1e-5}

// TestSitesDecode checks an adapted decode step with updates at all four
// block sites against the reference forward, for f32 and quantized
// (Q8_0, Q4_0, Q4_K) layer matrices, under the adapter's default matmul
// variant (the texture kernels on CPU adapters) and with the cooperative
// and plain mat-vec kernels forced (the GPUs' decode kernels): the logits
// must agree within the forward's tolerance, the fused sites
// (Ops.SiteMatMul's twins) must store the separate path's bits and record
// at least one dispatch fewer per site. One sequence has adaptation off
// (its rows' cluster is -1).
func TestSitesDecode(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	cfg := sitesDecodeCfg
	rng := rand.New(rand.NewPCG(seed, 5))
	host := model.RandomInit(cfg, seed)
	prompts, next := make([][]int32, 5), make([][]int32, 5)
	for i := range prompts {
		for range 1 + rng.IntN(9) {
			prompts[i] = append(prompts[i], int32(rng.IntN(cfg.VocabSize)))
		}
		next[i] = []int32{int32(rng.IntN(cfg.VocabSize))}
	}
	on := []bool{true, false, true, true, true}
	variant := w.MatMulVariant
	defer func() { w.MatMulVariant = variant }()
	for _, dt := range []gpu.DType{gpu.F32, gpu.Q8_0, gpu.Q4_0, gpu.Q4_K} {
		models := map[string]*model.Model{}
		for name, b := range map[string]gpu.Backend{"ref": ref.New(), "webgpu": w} {
			wt, err := model.Upload(b, cfg, host, dt)
			if err != nil {
				t.Fatal(err)
			}
			models[name] = &model.Model{Cfg: cfg, W: wt, B: b}
		}
		base, err := BaseOfModel(models["ref"])
		if err != nil {
			t.Fatal(err)
		}
		a := randomSitesAdapterStd(t, base, 4, "attn.qkv,attn.proj,mlp.fc,mlp.fc2", 0.3)
		want, _ := sitesDecodeStep(t, models["ref"], a, prompts, next, on, false)
		plain, _ := sitesDecodeStep(t, models["ref"], a, prompts, next, make([]bool, len(prompts)), false)
		var moved float64
		for j := range want {
			moved = max(moved, math.Abs(float64(want[j]-plain[j])))
		}
		if moved < 1e-2 {
			t.Fatalf("%v: the sites' updates move no logit by more than %.2g", dt, moved)
		}
		for _, v := range []string{variant, gpu.MatMulCoop, gpu.MatMulGemv} {
			w.MatMulVariant = v
			what := fmt.Sprintf("%v %s", dt, v)
			fused, nf := sitesDecodeStep(t, models["webgpu"], a, prompts, next, on, false)
			sep, ns := sitesDecodeStep(t, models["webgpu"], a, prompts, next, on, true)
			if err := conformance.AllClose(fused, want, 2e-4, 2e-3); err != nil {
				t.Errorf("%s: fused decode step against the reference: %v", what, err)
			}
			if !slices.Equal(fused, sep) {
				t.Errorf("%s: the fused sites' logits differ from the separate expand's (want bit for bit)", what)
			}
			if sites := uint64(4 * cfg.NLayer); ns < nf+sites {
				t.Errorf("%s: the decode step recorded %d dispatches fused, %d separate: want %d expands fewer", what, nf, ns, sites)
			}
		}
		for _, m := range models {
			m.W.Free(m.B)
		}
	}
}

// sitesDecodeStep plans a on prompts (two clusters), prefills them through
// m with the plan's adapter (adaptation on where on says) and returns the
// logits of one decode step of next and the dispatches that step recorded.
func sitesDecodeStep(t *testing.T, m *model.Model, a *Adapter, prompts, next [][]int32, on []bool, separate bool) ([]float32, uint64) {
	t.Helper()
	rt, err := NewRuntime(m, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	rt.SeparateSiteExpand = separate
	p, err := rt.Plan(prompts, PlanOptions{K: 2, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	c, err := m.NewCache(len(prompts), m.Cfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(c)
	ad := p.Adapter(on)
	lg, err := m.ForwardAdapted(c, prompts, true, ad)
	if err != nil {
		t.Fatal(err)
	}
	m.B.Free(lg)
	n0 := dispatches(m.B)
	if lg, err = m.ForwardAdapted(c, next, true, ad); err != nil {
		t.Fatal(err)
	}
	n := dispatches(m.B) - n0
	defer m.B.Free(lg)
	out, err := m.B.ReadF32(lg)
	if err != nil {
		t.Fatal(err)
	}
	return out, n
}
