package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// testInit is model.RandomInit with every matrix scaled by scale and noise
// of 0.1 added to every vector, so that LayerNorm gains and all biases take
// random values (every input of every backward op matters).
func testInit(cfg model.Config, seed uint64, scale float32) []model.HostTensor {
	host := model.RandomInit(cfg, seed)
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := range host {
		for j := range host[i].Data {
			if len(host[i].Shape) == 2 {
				host[i].Data[j] *= scale
			} else {
				host[i].Data[j] += float32(rng.NormFloat64() * 0.1)
			}
		}
	}
	return host
}

// randomBatch draws ragged sequences of the given lengths with random
// targets, some masked (-1).
func randomBatch(rng *rand.Rand, lens []int, v int) Batch {
	var b Batch
	for _, n := range lens {
		ts, ys := make([]int32, n), make([]int32, n)
		for i := range ts {
			ts[i], ys[i] = int32(rng.IntN(v)), int32(rng.IntN(v))
			if rng.IntN(5) == 0 {
				ys[i] = -1
			}
		}
		ys[0] = int32(rng.IntN(v)) // at least one scored position
		b.Tokens, b.Targets = append(b.Tokens, ts), append(b.Targets, ys)
	}
	return b
}

func newTestModel(t *testing.T, b gpu.TrainBackend, cfg model.Config, host []model.HostTensor) *Model {
	t.Helper()
	m, err := New(b, cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

func lossOf(t *testing.T, m *Model, b Batch) float64 {
	t.Helper()
	if err := m.Forward(b); err != nil {
		t.Fatal(err)
	}
	l, _, err := m.Loss()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestGradientFiniteDifferences checks the whole model's backward on the
// reference backend against central finite differences of the float32 loss:
// for every parameter tensor, the element with the largest gradient and two
// random elements (and, for the tied wte, elements of rows whose tokens are
// in the batch). The tolerance, 1% of the gradient plus 2e-4 (the float32
// loss's rounding divided by the step 2h = 0.02 is ~1e-5), is far tighter
// than any real defect: a dropped residual path, a missing half of the tied
// wte's gradient, a transposed weight gradient or a wrong 1/n changes
// gradients by O(1) factors (each of these was tried and fails the test).
func TestGradientFiniteDifferences(t *testing.T) {
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	cfg := model.Config{VocabSize: 23, NCtx: 8, NEmbd: 12, NHead: 3, NLayer: 2, LNEps: 1e-5}
	be := ref.New()
	host := testInit(cfg, seed, 10)
	m := newTestModel(t, be, cfg, host)
	batch := randomBatch(rng, []int{7, 4}, cfg.VocabSize)
	m.ZeroGrad()
	lossOf(t, m, batch)
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	grads, err := m.HostGrads()
	if err != nil {
		t.Fatal(err)
	}
	// wte is tied: rows of tokens in the batch get both the embedding's and
	// the output projection's gradient. Check elements of such rows too.
	var inBatch []int
	for _, ts := range batch.Tokens {
		for _, x := range ts {
			inBatch = append(inBatch, int(x))
		}
	}
	worst := 0.0
	for ti, p := range m.Params() {
		g := grads[ti].Data
		gmax, imax := 0.0, 0
		for i, x := range g {
			if math.Abs(float64(x)) > gmax {
				gmax, imax = math.Abs(float64(x)), i
			}
		}
		if gmax == 0 {
			t.Errorf("%s: gradient is identically zero", grads[ti].Name)
			continue
		}
		orig, err := be.ReadF32(p)
		if err != nil {
			t.Fatal(err)
		}
		check := []int{imax}
		for k := 0; k < 4; k++ {
			check = append(check, rng.IntN(len(g)))
		}
		if ti == 0 {
			for k := 0; k < 4; k++ {
				check = append(check, inBatch[rng.IntN(len(inBatch))]*cfg.NEmbd+rng.IntN(cfg.NEmbd))
			}
		}
		for _, i := range check {
			w := append([]float32(nil), orig...)
			h := 1e-2 * max(1, math.Abs(float64(orig[i])))
			w[i] = float32(float64(orig[i]) + h)
			hp := float64(w[i]) - float64(orig[i])
			be.Write(p, w)
			lp := lossOf(t, m, batch)
			w[i] = float32(float64(orig[i]) - h)
			hm := float64(orig[i]) - float64(w[i])
			be.Write(p, w)
			lm := lossOf(t, m, batch)
			be.Write(p, orig)
			fd := (lp - lm) / (hp + hm)
			an := float64(g[i])
			d := math.Abs(fd - an)
			worst = max(worst, d/(0.01*math.Abs(an)+2e-4))
			if d > 0.01*math.Abs(an)+2e-4 {
				t.Errorf("%s[%d]: backward %.6g, finite difference %.6g (|diff| %.3g; tensor's max |grad| %.3g)",
					grads[ti].Name, i, an, fd, d, gmax)
			}
		}
	}
	t.Logf("worst |diff| as a fraction of the tolerance: %.3f", worst)
}

// Configurations for the WebGPU tests, including sizes that are not
// multiples of 4 and a head size of 1.
var gpuConfigs = []model.Config{
	{VocabSize: 61, NCtx: 24, NEmbd: 12, NHead: 3, NLayer: 2, LNEps: 1e-5},
	{VocabSize: 257, NCtx: 33, NEmbd: 30, NHead: 5, NLayer: 1, LNEps: 1e-5},
	{VocabSize: 1000, NCtx: 64, NEmbd: 64, NHead: 4, NLayer: 2, LNEps: 1e-5},
	{VocabSize: 7, NCtx: 9, NEmbd: 5, NHead: 5, NLayer: 3, LNEps: 1e-5},
}

func readAll(t *testing.T, b gpu.Backend, x gpu.Tensor) []float32 {
	t.Helper()
	v, err := b.ReadF32(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// closeTensors compares two named host tensor lists with a tolerance
// relative to each tensor's largest reference value.
func closeTensors(t *testing.T, what string, got, want []model.HostTensor, atolFrac, rtol float64) {
	t.Helper()
	for i := range want {
		scale := 0.0
		for _, x := range want[i].Data {
			scale = max(scale, math.Abs(float64(x)))
		}
		if err := conformance.AllClose(got[i].Data, want[i].Data, atolFrac*scale+1e-7, rtol); err != nil {
			t.Errorf("%s %s: %v", what, want[i].Name, err)
		}
	}
}

// TestWebGPUMatchesReference runs the training forward, backward and two
// AdamW steps of random tiny models on ragged batches on both backends and
// compares the loss, the logits of the real positions, every gradient and
// the updated parameters.
func TestWebGPUMatchesReference(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	for ci, cfg := range gpuConfigs {
		t.Run(fmt.Sprintf("C%dH%dL%dV%d", cfg.NEmbd, cfg.NHead, cfg.NLayer, cfg.VocabSize), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(ci)))
			host := testInit(cfg, seed+uint64(ci), 5)
			lens := []int{cfg.NCtx, 1 + rng.IntN(cfg.NCtx), 1 + rng.IntN(cfg.NCtx)}
			batch := randomBatch(rng, lens, cfg.VocabSize)
			var grads [2][]model.HostTensor
			var params [2][]model.HostTensor
			var loss [2]float64
			var logits [2][]float32
			for k, be := range []gpu.TrainBackend{ref.New(), w} {
				m := newTestModel(t, be, cfg, host)
				m.ZeroGrad()
				loss[k] = lossOf(t, m, batch)
				logits[k] = readAll(t, be, m.Logits())
				if err := m.Backward(); err != nil {
					t.Fatal(err)
				}
				var err error
				if grads[k], err = m.HostGrads(); err != nil {
					t.Fatal(err)
				}
				// Eps 1e-3, not 1e-8: with a tiny eps AdamW's first steps are
				// sign(g), so an element whose gradient is rounding noise
				// (the key bias's is zero in exact arithmetic: it shifts every
				// score of a row equally) would step ±LR at random on each
				// backend. With eps 1e-3 such elements barely move.
				opt, err := NewAdamW(m, 0.9, 0.95, 1e-3, 0.1, 1.0)
				if err != nil {
					t.Fatal(err)
				}
				tr := &Trainer{M: m, Opt: opt, Sched: Schedule{LR: 1e-2, MinLR: 1e-3, Warmup: 1, Steps: 3}}
				for s := 0; s < 2; s++ {
					if _, err := tr.Step(batch); err != nil {
						t.Fatal(err)
					}
				}
				if params[k], err = m.Host(); err != nil {
					t.Fatal(err)
				}
				opt.Free()
			}
			if d := math.Abs(loss[1] - loss[0]); d > 1e-4*math.Abs(loss[0])+1e-5 {
				t.Errorf("loss: webgpu %.7g, reference %.7g", loss[1], loss[0])
			}
			nt, V := cfg.NCtx, cfg.VocabSize
			for b, ts := range batch.Tokens {
				o := b * nt * V
				if err := conformance.AllClose(logits[1][o:o+len(ts)*V], logits[0][o:o+len(ts)*V], 1e-4, 1e-3); err != nil {
					t.Errorf("logits of sequence %d: %v", b, err)
				}
			}
			closeTensors(t, "gradient", grads[1], grads[0], 1e-3, 1e-2)
			// Two AdamW steps move each weight by up to ~2 LR; compare the
			// parameters to a small fraction of that.
			closeTensors(t, "parameter after 2 steps", params[1], params[0], 2e-4, 1e-4)
		})
	}
}

// TestTrainingForwardMatchesModelForward: the training forward (no cache,
// AttentionTrain) gives model.Forward's logits (KV cache, Attention) for the
// same weights and ragged batch, on both backends.
func TestTrainingForwardMatchesModelForward(t *testing.T) {
	w := gputest.Backend(t)
	seed := conformance.Seed()
	t.Logf("seed %d", seed)
	cfg := gpuConfigs[1]
	rng := rand.New(rand.NewPCG(seed, 5))
	host := testInit(cfg, seed, 3)
	lens := []int{cfg.NCtx, 5, 17}
	batch := randomBatch(rng, lens, cfg.VocabSize)
	for _, be := range []gpu.TrainBackend{ref.New(), w} {
		m := newTestModel(t, be, cfg, host)
		lossOf(t, m, batch)
		got := readAll(t, be, m.Logits())
		wts, err := model.Upload(be, cfg, host, gpu.F32)
		if err != nil {
			t.Fatal(err)
		}
		im := &model.Model{Cfg: cfg, W: wts, B: be}
		c, err := im.NewCache(len(lens), cfg.NCtx)
		if err != nil {
			t.Fatal(err)
		}
		lg, err := im.Forward(c, batch.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		want := readAll(t, be, lg)
		V, nt := cfg.VocabSize, cfg.NCtx
		for b, n := range lens {
			o := b * nt * V
			if err := conformance.AllClose(got[o:o+n*V], want[o:o+n*V], 1e-5, 1e-4); err != nil {
				t.Errorf("%s: sequence %d: %v", be.Name(), b, err)
			}
		}
		be.Free(lg)
		im.FreeCache(c)
		wts.Free(be)
	}
}
