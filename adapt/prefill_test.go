package adapt

import (
	"math"
	"slices"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// TestPrefillPlan: a plan made inside the prompts' prefill (Prefill) has
// the clusters and factors of Runtime.Plan over the same prompts, and the
// prefill's logits, and the next decode step's, are those of Plan followed
// by a prefill through its adapter, on both backends, for hidden and
// embed+hidden features, with the self-check, in batch and online modes and
// with tuning. A prompt over the context goes to Plan up front (which
// refuses it), as does an embedding-only adapter; a forward of other
// sequences is refused.
//
// (Over 80 lines: one adapter per feature kind, each plan built both ways
// and compared step by step, on both backends.)
func TestPrefillPlan(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(9, 3)
	for _, kind := range []string{FeatureHidden, FeatureBoth} {
		a := prefillBasis(t, f, kind, 3)
		for name, m := range f.models {
			rt, err := NewRuntime(m, a)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []PlanOptions{{K: 3, Seed: 2}, {K: 3, Seed: 2, Ungated: true}, {Mode: ModeOnline},
				{Mode: ModeOnline, Tune: Tune{Steps: 2, LR: 0.1}}, {Mode: ModeOnline, Ungated: true, Tune: Tune{Steps: 2, LR: 0.1}}} {
				want, err := rt.Plan(prompts, o)
				if err != nil {
					t.Fatal(err)
				}
				pf, err := rt.Prefill(prompts, o)
				if err != nil {
					t.Fatal(err)
				}
				if !pf.InPrefill() || pf.Plan() != nil {
					t.Fatalf("%s %s: the plan was made before the prefill", name, kind)
				}
				steps := func(ad model.Adapter) [][]float32 {
					cache, err := m.NewCache(len(prompts), rtCfg.NCtx)
					if err != nil {
						t.Fatal(err)
					}
					defer m.FreeCache(cache)
					var out [][]float32
					next := prompts
					for range 2 {
						lg, err := m.ForwardAdapted(cache, next, true, ad)
						if err != nil {
							t.Fatal(err)
						}
						x, err := m.B.ReadF32(lg)
						m.B.Free(lg)
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, x)
						next = make([][]int32, len(prompts))
						for i := range next {
							next[i] = []int32{int32(i % rtCfg.VocabSize)}
						}
					}
					return out
				}
				wl, gl := steps(want.Adapter(nil)), steps(pf)
				got := pf.Plan()
				if got == nil || !slices.Equal(got.Cluster, want.Cluster) || got.K != want.K {
					t.Fatalf("%s %s %+v: clusters %v, Plan's %v", name, kind, o, got.Cluster, want.Cluster)
				}
				if o.Ungated && slices.Contains(got.Cluster, -1) {
					t.Fatalf("%s %s %+v: clusters %v: ungated, yet not every prompt adapted", name, kind, o, got.Cluster)
				}
				for s := range wl {
					var worst float64
					for i := range wl[s] {
						worst = max(worst, math.Abs(float64(wl[s][i]-gl[s][i])))
					}
					if worst > 1e-5 {
						t.Fatalf("%s %s %+v: step %d's logits differ from Plan's by %.2e", name, kind, o, s, worst)
					}
				}
				pf.Free()
				want.Free()
			}
			// A prompt over the context goes to Plan up front, which refuses
			// it as it does without a prefill.
			long := append(slices.Clone(prompts), make([]int32, rtCfg.NCtx+1))
			_, perr := rt.Plan(long, PlanOptions{Mode: ModeOnline})
			if _, err := rt.Prefill(long, PlanOptions{Mode: ModeOnline}); err == nil || perr == nil || err.Error() != perr.Error() {
				t.Errorf("%s %s: a prompt over the context: %v, Plan's %v", name, kind, err, perr)
			}
			// A forward of other sequences than the prompts is refused.
			pf, err := rt.Prefill(prompts, PlanOptions{Mode: ModeOnline})
			if err != nil {
				t.Fatal(err)
			}
			cache, err := m.NewCache(len(prompts), rtCfg.NCtx)
			if err != nil {
				t.Fatal(err)
			}
			other := slices.Clone(prompts)
			other[1] = append(slices.Clone(other[1]), 1)
			if _, err := m.ForwardAdapted(cache, other, true, pf); err == nil {
				t.Errorf("%s %s: a forward of other sequences made a plan", name, kind)
			}
			m.FreeCache(cache)
			pf.Free()
			rt.Free()
		}
	}
	emb := f.hyperAdapter(t, nil)
	rt, err := NewRuntime(f.models["ref"], emb)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	if pf, err := rt.Prefill(prompts, PlanOptions{K: 2}); err != nil || pf.InPrefill() {
		t.Errorf("an embedding-feature adapter: err %v, in prefill %v", err, err == nil && pf.InPrefill())
	} else {
		pf.Free()
	}
}

// prefillBasis is a self-checked gated basis with random weights and k
// training centroids for f's model, conditioned on kind's features.
func prefillBasis(t *testing.T, f *rtFixture, kind string, k int) *Adapter {
	t.Helper()
	in, _ := FeatureDim(kind, rtCfg.NEmbd)
	a := &Adapter{Meta: Meta{Kind: KindHyper, Rank: 3, StaticRank: 3, Basis: true, Alpha: 0.7, Hidden: []int{6},
		Features: kind, SelfCheck: true, Centroids: k, Base: f.base}}
	for _, s := range a.Meta.Spec() {
		s.Data = make([]float32, gpu.Numel(s.Shape))
		for j := range s.Data {
			s.Data[j] = float32(f.rng.NormFloat64() * 0.3)
		}
		if s.Name == CentroidsTensor {
			copy(s.Data, unitRowsOf(f, k, in))
		}
		a.Tensors = append(a.Tensors, s)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPrefillReadsSums: a plan made inside the prefill reads back each
// prompt's sum of its final hidden rows, not the rows, and its self-check
// gathers the rows it scores on the device. Against the same plan with
// the rows read back (rowsOnHost, what a tuned plan does), it reads back
// at least half the rows' bytes less and writes at least half the scored
// rows' bytes less; a tuned plan reads them all. The comparison leaves
// out the transfers both paths share, which a tiny model's rows do not
// outweigh.
func TestPrefillReadsSums(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(9, 3)
	m := f.models["webgpu"]
	rt, err := NewRuntime(m, prefillBasis(t, f, FeatureHidden, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Free()
	counter, ok := m.B.(gpu.Counter)
	if !ok {
		t.Fatalf("%s counts nothing", m.B.Name())
	}
	seq := 0
	for _, p := range prompts {
		seq = max(seq, len(p))
	}
	rowBytes := uint64(len(prompts) * seq * rtCfg.NEmbd * 4)
	// moved runs one adapted prefill and returns its transfers and how
	// many rows its self-check scored.
	moved := func(o PlanOptions, onHost bool) (gpu.Counts, uint64) {
		rt.rowsOnHost = onHost
		defer func() { rt.rowsOnHost = false }()
		pf, err := rt.Prefill(prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Free()
		rows, c0 := rt.CheckedRows(), counter.Counts()
		forwardLast(t, m, prompts, pf)
		got, checked := counter.Counts().Sub(c0), rt.CheckedRows()-rows
		if !pf.FromPrefill || checked == 0 {
			t.Fatalf("%+v: plan in the prefill %v, %d rows self-checked: the test needs both", o, pf.FromPrefill, checked)
		}
		return got, uint64(checked)
	}
	online := PlanOptions{Mode: ModeOnline}
	dev, devChecked := moved(online, false)
	host, hostChecked := moved(online, true)
	t.Logf("device rows: %d bytes read, %d written, %d checked; host rows: %d read, %d written, %d checked; %d bytes of rows",
		dev.ReadBytes, dev.WrittenBytes, devChecked, host.ReadBytes, host.WrittenBytes, hostChecked, rowBytes)
	rowWidth := uint64(rtCfg.NEmbd * 4)
	if dev.ReadBytes+rowBytes/2 > host.ReadBytes {
		t.Errorf("the device path read back %d bytes, the host path %d: not %d (half the rows) fewer", dev.ReadBytes, host.ReadBytes, rowBytes/2)
	}
	if 2*dev.WrittenBytes+hostChecked*rowWidth > 2*host.WrittenBytes {
		t.Errorf("the device path wrote %d bytes, the host path %d with %d scored rows of %d bytes: not half their bytes fewer", dev.WrittenBytes, host.WrittenBytes, hostChecked, rowWidth)
	}
	tuned := PlanOptions{Mode: ModeOnline, Tune: Tune{Steps: 1, LR: 0.1}}
	if got, _ := moved(tuned, false); got.ReadBytes < rowBytes {
		t.Errorf("%+v: tuning read back %d bytes, fewer than the rows' %d", tuned, got.ReadBytes, rowBytes)
	}
}

// forwardLast runs prompts from an empty cache adapted by ad (e.g. a
// Prefill, which makes its plan in this forward), the last positions'
// logits only, and waits for the device without reading them back (the
// transfer counts stay the plan's); the logits are freed.
func forwardLast(t *testing.T, m *model.Model, prompts [][]int32, ad model.Adapter) {
	t.Helper()
	lg := adaptedForward(t, m, prompts, true, ad)
	defer m.B.Free(lg)
	if err := m.B.Flush(); err != nil {
		t.Fatal(err)
	}
}

// unitRowsOf are k random unit rows of width in from f's generator.
func unitRowsOf(f *rtFixture, k, in int) []float32 {
	out := make([]float32, k*in)
	for i := range k {
		row := out[i*in : (i+1)*in]
		var n float64
		for j := range row {
			x := f.rng.NormFloat64()
			row[j], n = float32(x), n+x*x
		}
		for j := range row {
			row[j] = float32(float64(row[j]) / math.Sqrt(n))
		}
	}
	return out
}

// TestSelfCheckLastTokens: with Runtime.CheckTokens = 3 the self-check
// keeps a prompt's update exactly where it lowers the summed loss of the
// prompt's last 3 predictions (computed here from the ungated plan's and
// the base model's per-position scores), and Plan, Prefill and the
// forwards apart agree.
func TestSelfCheckLastTokens(t *testing.T) {
	f := newRTFixture(t)
	drawn, _ := f.prompts(20, 3)
	var prompts [][]int32
	for _, s := range drawn {
		if len(s) >= 2 { // the base scores below need a prediction
			prompts = append(prompts, s)
		}
	}
	m := f.models["ref"]
	o := PlanOptions{K: 3, Seed: 2}
	// An adapter for which the last 3 predictions decide some prompt
	// otherwise than all of them would.
	var rt *Runtime
	var want []int
	for try := 0; want == nil; try++ {
		if try == 40 {
			t.Fatal("no adapter of 40 where the last 3 predictions change a decision")
		}
		a := f.hyperAdapter(t, nil)
		a.Meta.Features, a.Meta.SelfCheck = FeatureHidden, true
		hc := rtHyper
		hc.In = rtCfg.NEmbd
		a.Tensors = InitHyper(hc, f.rng.Uint64())
		for i := range a.Tensors {
			for j := range a.Tensors[i].Data {
				a.Tensors[i].Data[j] *= 3 // updates that matter, unevenly across positions
			}
		}
		var err error
		if rt, err = NewRuntime(m, a); err != nil {
			t.Fatal(err)
		}
		rt.CheckTokens = 3
		last, every := selfCheckByHand(t, m, rt, prompts, o, 3)
		if !slices.Equal(last, every) && slices.Contains(last, -1) && slices.ContainsFunc(last, func(c int) bool { return c >= 0 }) {
			want = last
		} else {
			rt.Free()
		}
	}
	defer rt.Free()
	p, err := rt.Plan(prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	if !slices.Equal(p.Cluster, want) {
		t.Fatalf("Plan's self-check %v, the last 3 predictions say %v", p.Cluster, want)
	}
	pf, err := rt.Prefill(prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Free()
	forwardLast(t, m, prompts, pf)
	if !slices.Equal(pf.Plan().Cluster, want) {
		t.Fatalf("the prefill's self-check %v, the last 3 predictions say %v", pf.Plan().Cluster, want)
	}
	rt.noSharedPass = true
	q, err := rt.Plan(prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Free()
	if !slices.Equal(q.Cluster, want) {
		t.Fatalf("the forwards apart: %v, the last 3 predictions say %v", q.Cluster, want)
	}
}

// ungatedLosses is the ungated plan's clusters for prompts and each
// prompt's per-position losses under the base model and under its
// cluster's update (nil for prompts of fewer than 2 tokens).
func ungatedLosses(t *testing.T, m *model.Model, rt *Runtime, prompts [][]int32, o PlanOptions) (cl []int, base, adapted [][]float32) {
	t.Helper()
	o.Ungated = true
	all, err := rt.Plan(prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Free()
	var long [][]int32
	var at []int
	for i, s := range prompts {
		if len(s) >= 2 {
			long, at = append(long, s), append(at, i)
		}
	}
	bs, err := m.ScoreChunked(long, func(int) model.Adapter { return nil })
	if err != nil {
		t.Fatal(err)
	}
	as, err := m.ScoreChunked(long, func(first int) model.Adapter { return all.AdapterOf(at[first:], nil) })
	if err != nil {
		t.Fatal(err)
	}
	base, adapted = make([][]float32, len(prompts)), make([][]float32, len(prompts))
	for k, i := range at {
		base[i], adapted[i] = bs[k].Losses, as[k].Losses
	}
	return slices.Clone(all.Cluster), base, adapted
}

// selfCheckByHand is the self-check's decision for each prompt from the
// ungated plan's and the base model's per-position scores: over the last n
// predictions, and over all of them.
func selfCheckByHand(t *testing.T, m *model.Model, rt *Runtime, prompts [][]int32, o PlanOptions, n int) (last, every []int) {
	t.Helper()
	cl, base, adapted := ungatedLosses(t, m, rt, prompts, o)
	last, every = slices.Clone(cl), slices.Clone(cl)
	for i, s := range prompts {
		for _, x := range []struct {
			dst  []int
			from int
		}{{last, max(0, len(s)-1-n)}, {every, 0}} {
			var b, d float64
			for j := x.from; j < len(s)-1; j++ {
				b += float64(base[i][j])
				d += float64(adapted[i][j])
			}
			if !(d < b) {
				x.dst[i] = -1
			}
		}
	}
	return last, every
}
