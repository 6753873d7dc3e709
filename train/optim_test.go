package train

import (
	"math"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// TestSchedule: linear warm-up reaching LR at step Warmup, then a cosine
// decay that falls monotonically to MinLR at step Steps, halfway between at
// the middle of the decay.
func TestSchedule(t *testing.T) {
	s := Schedule{LR: 1e-3, MinLR: 1e-4, Warmup: 10, Steps: 110}
	for step := 1; step <= s.Warmup; step++ {
		if got, want := s.At(step), s.LR*float64(step)/10; math.Abs(got-want) > 1e-15 {
			t.Errorf("warm-up step %d: lr %g, want %g", step, got, want)
		}
	}
	prev := s.At(s.Warmup)
	for step := s.Warmup + 1; step <= s.Steps; step++ {
		lr := s.At(step)
		if lr > prev || lr < s.MinLR {
			t.Errorf("step %d: lr %g after %g (floor %g)", step, lr, prev, s.MinLR)
		}
		prev = lr
	}
	if got := s.At(s.Steps); got != s.MinLR {
		t.Errorf("last step: lr %g, want the floor %g", got, s.MinLR)
	}
	if got, want := s.At(60), (s.LR+s.MinLR)/2; math.Abs(got-want) > 1e-12 {
		t.Errorf("middle of the decay: lr %g, want %g", got, want)
	}
}

// TestWeightDecayOnlyOnMatrices: with a zero gradient, one AdamW step
// shrinks every 2-D parameter by the factor 1 - LR*WD and leaves every
// bias and LayerNorm parameter as it was.
func TestWeightDecayOnlyOnMatrices(t *testing.T) {
	cfg := gpuConfigs[0]
	host := testInit(cfg, 3, 1)
	m := newTestModel(t, ref.New(), cfg, host)
	opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	m.ZeroGrad()
	const lr = 0.1
	opt.Update(m.Params(), m.Grads(), lr)
	after, err := m.Host()
	if err != nil {
		t.Fatal(err)
	}
	checkDecayed(t, host, after, lr*0.5, func(i int) bool { return len(host[i].Shape) == 2 })
}

// checkDecayed fails unless after is host shrunk by the factor 1 - shrink
// where decayed(i) and unchanged elsewhere: one zero-gradient AdamW step.
func checkDecayed(t *testing.T, host, after []model.HostTensor, shrink float32, decayed func(i int) bool) {
	t.Helper()
	for i, h := range host {
		f := float32(1)
		if decayed(i) {
			f = 1 - shrink
		}
		for j, x := range h.Data {
			if want := x * f; math.Abs(float64(after[i].Data[j]-want)) > 1e-7 {
				t.Fatalf("%s[%d] (decayed %v): %g after a zero-gradient step, want %g", h.Name, j, decayed(i), after[i].Data[j], want)
			}
		}
	}
}

// TestSetDecay: a decay mask decays exactly the parameters it names,
// whatever their shape (here every other parameter, 1-D ones included),
// and a mask of the wrong length is refused.
func TestSetDecay(t *testing.T) {
	cfg := gpuConfigs[0]
	host := testInit(cfg, 3, 1)
	m := newTestModel(t, ref.New(), cfg, host)
	opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.5, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	if err := opt.SetDecay(make([]bool, len(host)+1)); err == nil {
		t.Fatal("a mask one parameter too long was accepted")
	}
	mask := make([]bool, len(host))
	for i := range mask {
		mask[i] = i%2 == 1
	}
	if err := opt.SetDecay(mask); err != nil {
		t.Fatal(err)
	}
	m.ZeroGrad()
	const lr = 0.1
	opt.Update(m.Params(), m.Grads(), lr)
	after, err := m.Host()
	if err != nil {
		t.Fatal(err)
	}
	checkDecayed(t, host, after, lr*0.5, func(i int) bool { return mask[i] })
}

// TestBenchStep: BenchStep runs on WebGPU and reports positive rates.
func TestBenchStep(t *testing.T) {
	cfg := model.Config{VocabSize: 97, NCtx: 16, NEmbd: 16, NHead: 2, NLayer: 1, LNEps: 1e-5}
	tps, flops, err := BenchStep(gputest.Backend(t), cfg, 2, 16)
	if err != nil || !(tps > 0) || !(flops > 0) {
		t.Fatalf("BenchStep: %g tokens/s, %g FLOP/s, %v", tps, flops, err)
	}
}
