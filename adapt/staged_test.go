package adapt

import (
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

func TestCheckStagesRule(t *testing.T) {
	s := CheckStages{Stride: 4, Margin: 0.1}
	if got := s.FirstStage(64); len(got) != 16 || got[0] != 3 || got[15] != 63 {
		t.Fatalf("FirstStage(64) = %v, want 3, 7, ..., 63", got)
	}
	if got := s.FirstStage(29); len(got) != 8 || got[0] != 0 || got[7] != 28 {
		t.Fatalf("FirstStage(29) = %v, want 0, 4, ..., 28", got)
	}
	if got := s.FirstStage(28); got != nil {
		t.Fatalf("FirstStage(28) = %v: 7 predictions are under MinFirstStage", got)
	}
	if (CheckStages{}).FirstStage(64) != nil {
		t.Fatal("the zero rule stages")
	}
	// 32 predictions, stride 4: the first stage is offsets 3, 7, ..., 31.
	base, adapted := make([]float32, 32), make([]float32, 32)
	for i := range base {
		base[i] = 2
		adapted[i] = 2.5 // worse everywhere but in the first stage
		if i%4 == 3 {
			adapted[i] = 1.8
		}
	}
	if keep, n := s.Decide(base, adapted); !keep || n != 8 {
		t.Fatalf("a first stage 0.2 nats better: keep %v after %d predictions, want an early keep after 8", keep, n)
	}
	if keep, n := (CheckStages{Stride: 4, Margin: 0.25}).Decide(base, adapted); keep || n != 32 {
		t.Fatalf("under the margin: keep %v after %d predictions, want the full sum (worse) after 32", keep, n)
	}
	// Nothing is rejected early: a first stage far worse, a sum better.
	for i := range adapted {
		adapted[i] = 1
		if i%4 == 3 {
			adapted[i] = 4 // sum 56 against 64
		}
	}
	if keep, n := s.Decide(base, adapted); !keep || n != 32 {
		t.Fatalf("a worse first stage, a better sum: keep %v after %d, want kept after all 32", keep, n)
	}
	for _, bad := range []CheckStages{{Stride: 1}, {Stride: -2}, {Stride: 4, Margin: -0.1}, {Margin: 0.1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// TestStagedSelfCheck: with a staged rule in the file, every path of the
// self-check (the shared base pass, the prefill's rows scored in two
// stages, the forwards apart) decides as the rule applied by hand to
// every prediction's losses does, on an adapter where the stages change a
// decision; the prefill projects only what the stages need.
//
// (Over 80 lines: the search for an adapter the stages matter to, then the
// three paths and FullCheck on each backend.)
func TestStagedSelfCheck(t *testing.T) {
	f := newRTFixture(t)
	var prompts [][]int32
	for i := range 32 {
		l := 17 + f.rng.IntN(rtCfg.NCtx-16)
		s := make([]int32, l)
		for j := range s {
			s[j] = int32((i%3)*3 + f.rng.IntN(3))
		}
		prompts = append(prompts, s)
	}
	prompts = append(prompts, []int32{4}, []int32{5, 6, 7}) // one without and one with too few predictions to stage
	o := PlanOptions{K: 3, Seed: 2}
	for _, name := range []string{"ref", "webgpu"} {
		m := f.models[name]
		var rt *Runtime
		var want []int
		var scored int
		for try := 0; want == nil; try++ {
			if try == 200 {
				t.Fatalf("%s: no adapter of 200 where the stages change a decision", name)
			}
			a := f.hyperAdapter(t, nil)
			a.Meta.Features, a.Meta.SelfCheck = FeatureHidden, true
			a.Meta.CheckStride, a.Meta.CheckMargin = 2, []float64{0, 0.02, 0.05}[try%3]
			hc := rtHyper
			hc.In = rtCfg.NEmbd
			a.Tensors = InitHyper(hc, f.rng.Uint64())
			for i := range a.Tensors {
				for j := range a.Tensors[i].Data {
					a.Tensors[i].Data[j] *= 3
				}
			}
			var err error
			if rt, err = NewRuntime(m, a); err != nil {
				t.Fatal(err)
			}
			staged, full, n, early := stagedByHand(t, m, rt, prompts, o)
			if !slices.Equal(staged, full) && early > 0 && n > early && slices.Contains(staged, -1) {
				want, scored = staged, n
			} else {
				rt.Free()
			}
		}
		plan := func(what string) {
			t.Helper()
			p, err := rt.Plan(prompts, o)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Free()
			if !slices.Equal(p.Cluster, want) {
				t.Fatalf("%s: %s: self-check %v, the staged rule by hand %v", name, what, p.Cluster, want)
			}
		}
		plan("Plan (shared base pass)")
		rt.checkRows = 0
		pf, err := rt.Prefill(prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		forwardLast(t, m, prompts, pf)
		if !slices.Equal(pf.Plan().Cluster, want) {
			t.Fatalf("%s: the prefill's staged self-check %v, the rule by hand %v", name, pf.Plan().Cluster, want)
		}
		pf.Free()
		if rt.checkRows != scored {
			t.Fatalf("%s: the prefill projected %d rows, the stages need %d", name, rt.checkRows, scored)
		}
		rt.noSharedPass = true
		plan("the forwards apart")
		rt.noSharedPass, rt.FullCheck = false, true
		p, err := rt.Plan(prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(p.Cluster, want) {
			t.Fatalf("%s: FullCheck decides as the stages do (%v)", name, want)
		}
		p.Free()
		rt.Free()
	}
}

// stagedByHand applies the runtime's staged rule to each prompt's losses
// under the base model and the ungated plan: the staged and the one-stage
// decisions, the predictions the stages score, and how many prompts the
// first stage keeps.
func stagedByHand(t *testing.T, m *model.Model, rt *Runtime, prompts [][]int32, o PlanOptions) (staged, full []int, scored, early int) {
	t.Helper()
	cl, base, adapted := ungatedLosses(t, m, rt, prompts, o)
	staged, full = slices.Clone(cl), slices.Clone(cl)
	for i, b := range base {
		if b == nil {
			continue
		}
		a := adapted[i]
		keep, n := rt.stages().Decide(b, a)
		if first := rt.stages().FirstStage(len(b)); first != nil && n == len(first) {
			early++
		}
		scored += n
		if !keep {
			staged[i] = -1
		}
		if !(sumLosses(a) < sumLosses(b)) {
			full[i] = -1
		}
	}
	for i, s := range prompts {
		if len(s) < 2 {
			staged[i], full[i] = -1, -1
		}
	}
	return staged, full, scored, early
}
