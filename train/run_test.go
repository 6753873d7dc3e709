package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/conformance"
	"github.com/chameleon-llm/chameleon/gpu/gputest"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

const tinyText = `It is a truth universally acknowledged, that a single man in possession
of a good fortune, must be in want of a wife. However little known the feelings
or views of such a man may be on his first entering a neighbourhood, this truth
is so well fixed in the minds of the surrounding families.`

// charStream maps text to a byte-level vocabulary of its distinct bytes.
func charStream(text string) (stream []int32, vocab int) {
	ids := map[byte]int32{}
	var keys []byte
	for i := 0; i < len(text); i++ {
		if _, ok := ids[text[i]]; !ok {
			ids[text[i]] = 0
			keys = append(keys, text[i])
		}
	}
	slices.Sort(keys)
	for i, k := range keys {
		ids[k] = int32(i)
	}
	for i := 0; i < len(text); i++ {
		stream = append(stream, ids[text[i]])
	}
	return stream, len(keys)
}

// bigramEntropy is the empirical conditional entropy H(next | previous) of
// stream in nats: the best loss a model that sees only the previous token
// can reach on this text.
func bigramEntropy(stream []int32) float64 {
	pair := map[[2]int32]float64{}
	prev := map[int32]float64{}
	for i := 0; i+1 < len(stream); i++ {
		pair[[2]int32{stream[i], stream[i+1]}]++
		prev[stream[i]]++
	}
	var h float64
	n := float64(len(stream) - 1)
	for k, c := range pair {
		h -= c / n * math.Log(c/prev[k[0]])
	}
	return h
}

// TestOverfitTinyText trains a tiny model on one paragraph (its windows in
// one ragged batch) on the WebGPU backend and requires the loss on it to fall
// below a quarter of the paragraph's bigram entropy within 40 steps. A
// model starts near ln(V) ≈ 3.4 nats; a model of unigram or bigram
// statistics cannot go below the bigram entropy (≈ 1.9 nats here), so the
// bound is only met when the whole forward, backward and optimiser work
// together to memorise the text (a wrong gradient anywhere stalls it).
func TestOverfitTinyText(t *testing.T) {
	w := gputest.Backend(t)
	stream, v := charStream(tinyText)
	cfg := model.Config{VocabSize: v, NCtx: 48, NEmbd: 48, NHead: 4, NLayer: 1, LNEps: 1e-5}
	m := newTestModel(t, w, cfg, model.RandomInit(cfg, 3))
	opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	const steps = 40
	tr := &Trainer{M: m, Opt: opt, Sched: Schedule{LR: 1e-2, MinLR: 1e-3, Warmup: 5, Steps: steps}}
	// The paragraph as consecutive windows in one ragged batch (the last
	// window is shorter), the same batch every step.
	eval := EvalBatches(stream, 8, cfg.NCtx, len(stream))
	if len(eval) != 1 {
		t.Fatalf("%d batches, want the paragraph in one", len(eval))
	}
	start, _, err := Eval(m, eval)
	if err != nil {
		t.Fatal(err)
	}
	for s := 0; s < steps; s++ {
		if _, err := tr.Step(eval[0]); err != nil {
			t.Fatal(err)
		}
	}
	end, _, err := Eval(m, eval)
	if err != nil {
		t.Fatal(err)
	}
	h2 := bigramEntropy(stream)
	t.Logf("V %d (ln V %.3f), bigram entropy %.3f: loss %.3f -> %.3f after %d steps", v, math.Log(float64(v)), h2, start, end, steps)
	if !(end < h2/4) {
		t.Errorf("loss %.3f after %d steps, want below a quarter of the bigram entropy, %.3f", end, steps, h2/4)
	}
}

// TestNonFiniteStepDetected: a NaN weight (non-finite loss) and a NaN
// gradient (finite loss) each make Step return a *NonFiniteError naming the
// step, with no parameter changed.
func TestNonFiniteStepDetected(t *testing.T) {
	w := gputest.Backend(t)
	cfg := gpuConfigs[0]
	rng := rand.New(rand.NewPCG(conformance.Seed(), 4))
	for _, mode := range []string{"weight", "gradient"} {
		for _, be := range []gpu.TrainBackend{ref.New(), w} {
			m := newTestModel(t, be, cfg, testInit(cfg, 1, 1))
			opt, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.1, 1)
			if err != nil {
				t.Fatal(err)
			}
			tr := &Trainer{M: m, Opt: opt, Sched: Schedule{LR: 1e-3, Steps: 10}}
			batch := randomBatch(rng, []int{5, 3}, cfg.VocabSize)
			if _, err := tr.Step(batch); err != nil {
				t.Fatal(err)
			}
			nan := make([]float32, cfg.NEmbd)
			for i := range nan {
				nan[i] = float32(math.NaN())
			}
			switch mode {
			case "weight":
				if err := be.Write(m.W.Layers[0].Ln2B, nan); err != nil {
					t.Fatal(err)
				}
			case "gradient":
				tr.afterBackward = func() { be.Write(m.G.LnFB, nan) }
			}
			before, err := m.Host()
			if err != nil {
				t.Fatal(err)
			}
			_, err = tr.Step(batch)
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Step != 2 || !strings.Contains(err.Error(), "step 2") {
				t.Fatalf("%s, NaN %s: Step returned %v, want a NonFiniteError for step 2", be.Name(), mode, err)
			}
			if opt.Step != 1 {
				t.Errorf("%s: optimiser step %d after a failed step, want 1", be.Name(), opt.Step)
			}
			after, err := m.Host()
			if err != nil {
				t.Fatal(err)
			}
			for i := range before {
				if !slices.EqualFunc(before[i].Data, after[i].Data, func(a, b float32) bool {
					return a == b || a != a && b != b
				}) {
					t.Errorf("%s, NaN %s: %s changed by a failed step", be.Name(), mode, before[i].Name)
				}
			}
			opt.Free()
		}
	}
}

// tinyRun is a Run configuration on a synthetic two-domain dataset.
func tinyRun(t *testing.T, out string, steps int) (Options, *Dataset) {
	rng := rand.New(rand.NewPCG(7, 7))
	mc := model.Config{VocabSize: 29, NCtx: 16, NEmbd: 12, NHead: 3, NLayer: 2, LNEps: 1e-5}
	ds := &Dataset{Val: map[string][]int32{}, Domains: []string{"a", "b"}, EOT: 0}
	for i := 0; i < 600; i++ {
		ds.Train = append(ds.Train, int32(1+(i*i+rng.IntN(3))%28))
	}
	for _, d := range ds.Domains {
		for i := 0; i < 50; i++ {
			ds.Val[d] = append(ds.Val[d], int32(rng.IntN(29)))
		}
	}
	cfg := DefaultConfig(mc)
	cfg.Steps, cfg.Batch, cfg.Seq, cfg.Warmup, cfg.LR, cfg.MinLR = steps, 3, 16, 2, 1e-2, 1e-3
	cfg.EvalEvery, cfg.SaveEvery, cfg.EvalTokens = 2, 3, 40
	return Options{Config: cfg, Out: out, Data: ds, Backend: ref.New()}, ds
}

func loadParams(t *testing.T, dir string) []model.HostTensor {
	t.Helper()
	_, host, err := model.LoadHF(filepath.Join(dir, checkpointDir))
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// TestResumeMatchesUninterrupted: a run stopped after step 4 (its last
// checkpoint is step 3) and resumed ends with bit-identical parameters,
// moments and history to an uninterrupted run, on the reference backend.
func TestResumeMatchesUninterrupted(t *testing.T) {
	const steps = 7
	dirA, dirB := t.TempDir(), t.TempDir()
	oa, _ := tinyRun(t, dirA, steps)
	ra, err := Run(context.Background(), oa)
	if err != nil {
		t.Fatal(err)
	}
	// Interrupted run: cancel during step 5, which then never happens;
	// Run saves the state of step 4 on the way out. Then lose that save to
	// also cover a crash: resume from the periodic checkpoint of step 3.
	ob, _ := tinyRun(t, dirB, steps)
	ctx, cancel := context.WithCancel(context.Background())
	ob.Progress = func(p Progress) {
		if p.Step == 4 {
			cancel()
		}
	}
	if _, err := Run(ctx, ob); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run returned %v, want context.Canceled", err)
	}
	if st := readState(t, dirB); st.Step != 4 {
		t.Fatalf("checkpoint after cancelling at step 4 is at step %d", st.Step)
	}
	ob.Progress, ob.Resume = nil, true
	rb, err := Run(context.Background(), ob)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Step != steps || rb.Step != steps {
		t.Fatalf("steps %d and %d, want %d", ra.Step, rb.Step, steps)
	}
	pa, pb := loadParams(t, dirA), loadParams(t, dirB)
	for i := range pa {
		if !slices.Equal(pa[i].Data, pb[i].Data) {
			t.Errorf("%s differs between the resumed and the uninterrupted run", pa[i].Name)
		}
	}
	for _, f := range []string{optimizerFile} {
		a, _ := os.ReadFile(filepath.Join(dirA, checkpointDir, f))
		b, _ := os.ReadFile(filepath.Join(dirB, checkpointDir, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the resumed and the uninterrupted run", f)
		}
	}
	ha, hb := readState(t, dirA).History, readState(t, dirB).History
	if len(ha.Train) != steps || !slices.Equal(ha.Train, hb.Train) {
		t.Errorf("training histories differ:\n%v\n%v", ha.Train, hb.Train)
	}
	png, err := os.ReadFile(filepath.Join(dirB, LossPlot))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("loss plot: %v", err)
	}
	// A run into a dir with a checkpoint needs --resume.
	if _, err := Run(context.Background(), oa); err == nil || !strings.Contains(err.Error(), "resume") {
		t.Errorf("a second run into %s returned %v, want a refusal naming --resume", dirA, err)
	}
}

func readState(t *testing.T, dir string) state {
	t.Helper()
	var s state
	b, err := os.ReadFile(filepath.Join(dir, checkpointDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestResumeRefusesOtherConfig: resuming with another model width or
// learning rate is refused with the differences named; other eval/save
// intervals are accepted.
func TestResumeRefusesOtherConfig(t *testing.T) {
	dir := t.TempDir()
	o, _ := tinyRun(t, dir, 3)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	o2, _ := tinyRun(t, dir, 3)
	o2.Resume = true
	o2.Model.NEmbd, o2.Model.NHead = 16, 4
	o2.LR = 3e-3
	_, err := Run(context.Background(), o2)
	if err == nil {
		t.Fatal("resuming with another configuration succeeded")
	}
	for _, want := range []string{"model.n_embd: 12 -> 16", "model.n_head: 3 -> 4", "lr: 0.01 -> 0.003"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	o3, _ := tinyRun(t, dir, 3)
	o3.Resume, o3.EvalEvery, o3.SaveEvery = true, 5, 7
	if _, err := Run(context.Background(), o3); err != nil {
		t.Errorf("resuming with other eval/save intervals: %v", err)
	}
}

// TestRunStopsOnNonFinite: a NaN gradient at step 5 stops Run with an error
// naming step 5, and the checkpoint of step 3 stays.
func TestRunStopsOnNonFinite(t *testing.T) {
	dir := t.TempDir()
	o, _ := tinyRun(t, dir, 8)
	o.afterBackward = func(step int, m *Model) {
		if step == 5 {
			g := m.G.LnFB
			m.B.Write(g, slices.Repeat([]float32{float32(math.NaN())}, gpu.Numel(g.Shape())))
		}
	}
	_, err := Run(context.Background(), o)
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Step != 5 || !strings.Contains(err.Error(), "step 5") || !strings.Contains(err.Error(), "step 3") {
		t.Fatalf("Run returned %v, want a NonFiniteError at step 5 that names the kept checkpoint of step 3", err)
	}
	if st := readState(t, dir); st.Step != 3 {
		t.Errorf("checkpoint at step %d, want the last good one, 3", st.Step)
	}
}
