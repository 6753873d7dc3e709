package adapt

import (
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// residualTap is a model.Adapter whose pass hands fn the residual stream
// after the last block and leaves the logits to the base model.
type residualTap func(x gpu.Tensor) error

func (f residualTap) Begin(_, _ []int32) (model.Pass, error)        { return f, nil }
func (residualTap) Updates(model.Site) bool                         { return false }
func (residualTap) Linear(model.Site, gpu.Tensor, gpu.Tensor) error { return nil }
func (residualTap) Logits(gpu.Tensor, gpu.Tensor) (bool, error)     { return false, nil }
func (residualTap) End()                                            {}
func (f residualTap) Residual(x gpu.Tensor) error                   { return f(x) }

// feedChunked prefills prompts chunk tokens a step, as a server's
// scheduler does (a finished prompt feeds nothing), feeding every step's
// rows to the prompts' PromptRows on the device, and returns their
// AssignPrefilled clusters and the PromptRows. Where the backend counts transfers it checks
// that the steps read back only the sums and the rows the self-check reads.
func feedChunked(t *testing.T, rt *Runtime, prompts [][]int32, chunk int) ([]int, []*PromptRows) {
	t.Helper()
	m := rt.M
	cache, err := m.NewCache(len(prompts), rtCfg.NCtx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(cache)
	prs, ns := make([]*PromptRows, len(prompts)), make([]int, len(prompts))
	feed := residualTap(func(x gpu.Tensor) error { return rt.FeedResidual(x, prs, ns) })
	for i, p := range prompts {
		if prs[i], err = rt.NewPromptRows(p); err != nil {
			t.Fatal(err)
		}
	}
	counter, counts := m.B.(gpu.Counter)
	var c0 gpu.Counts
	if counts {
		c0 = counter.Counts()
	}
	steps := 0
	for at := 0; ; at += chunk {
		step := make([][]int32, len(prompts))
		fed := false
		for i, p := range prompts {
			step[i] = p[min(at, len(p)):min(at+chunk, len(p))]
			ns[i], fed = len(step[i]), fed || len(step[i]) > 0
		}
		if !fed {
			break
		}
		lg, err := m.ForwardAdapted(cache, step, true, feed)
		if err != nil {
			t.Fatal(err)
		}
		m.B.Free(lg)
		steps++
	}
	if counts {
		// Each step's sums and each prompt's last keep rows, no more.
		want := uint64(steps * len(prompts) * rtCfg.NEmbd * 4)
		for _, p := range prs {
			want += uint64(p.keep * rtCfg.NEmbd * 4)
		}
		if read := counter.Counts().Sub(c0).ReadBytes; read != want {
			t.Errorf("%s: the chunked prefill read back %d bytes, not %d (%d steps' sums and the checked rows)", m.B.Name(), read, want, steps)
		}
	}
	got, err := rt.AssignPrefilled(prs)
	if err != nil {
		t.Fatal(err)
	}
	return got, prs
}

// TestAssignPrefilled: prompts whose final hidden rows are fed a few at a
// time (PromptRows) get from AssignPrefilled the clusters AssignCentroids
// gives them with its own base pass: the nearest training centroid, and the
// base model where the self-check, on the last 3 predictions, finds the
// update no better, on both backends, for an adapter where the last 3
// predictions decide otherwise than all of them would.
//
// (Over 80 lines: the search for such an adapter, the prefill's rows fed
// in chunks on both backends, misuse, and the adapters the prefill cannot
// assign for.)
func TestAssignPrefilled(t *testing.T) {
	f := newRTFixture(t)
	prompts, _ := f.prompts(20, 3)
	c := rtCfg.NEmbd
	var a *Adapter
	var want []int
	for try := 0; want == nil; try++ {
		if try == 40 {
			t.Fatal("no adapter of 40 where the last 3 predictions change an assignment")
		}
		a = f.hyperAdapter(t, unitRowsOf(f, 3, c))
		a.Meta.Features, a.Meta.SelfCheck = FeatureHidden, true
		hc := rtHyper
		hc.In = c
		a.Tensors = append(InitHyper(hc, f.rng.Uint64()), a.Tensors[len(a.Tensors)-1])
		for i := range a.Tensors[:len(a.Tensors)-1] {
			for j := range a.Tensors[i].Data {
				a.Tensors[i].Data[j] *= 3
			}
		}
		rt, err := NewRuntime(f.models["ref"], a)
		if err != nil {
			t.Fatal(err)
		}
		every, _, err := rt.AssignCentroidsLosses(prompts)
		if err != nil {
			t.Fatal(err)
		}
		rt.CheckTokens = 3
		last, err := rt.AssignCentroids(prompts)
		rt.Free()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(last, every) && slices.Contains(last, -1) && slices.ContainsFunc(last, func(c int) bool { return c >= 0 }) {
			want = last
		}
	}
	for name, m := range f.models {
		rt, err := NewRuntime(m, a)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Free()
		rt.CheckTokens = 3
		if got, err := rt.AssignCentroids(prompts); err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s: AssignCentroids %v (%v), the reference's %v", name, got, err, want)
		}
		cache, err := m.NewCache(len(prompts), rtCfg.NCtx)
		if err != nil {
			t.Fatal(err)
		}
		var rows []float32
		tq := 0
		tap := residualTap(func(x gpu.Tensor) error {
			var err error
			tq = x.Shape()[1]
			rows, err = rt.FinalRows(x)
			return err
		})
		lg, err := m.ForwardAdapted(cache, prompts, true, tap)
		m.FreeCache(cache)
		if err != nil {
			t.Fatal(err)
		}
		m.B.Free(lg)
		prs := make([]*PromptRows, len(prompts))
		for i, p := range prompts {
			if prs[i], err = rt.NewPromptRows(p); err != nil {
				t.Fatal(err)
			}
			rows := rows[i*tq*c : (i*tq+len(p))*c]
			for at := 0; at < len(p); at += 2 { // chunks of 2 rows, as a server's prefill feeds them
				if err := prs[i].Feed(rows[at*c : min(at+2, len(p))*c]); err != nil {
					t.Fatal(err)
				}
				if done := at+2 >= len(p); prs[i].Done() != done {
					t.Fatalf("prompt %d of %d tokens: done %v after %d", i, len(p), prs[i].Done(), prs[i].Fed())
				}
			}
		}
		got, err := rt.AssignPrefilled(prs)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: assigned from the prefill %v, AssignCentroids %v", name, got, want)
		}
		got, dev := feedChunked(t, rt, prompts, 2)
		if !slices.Equal(got, want) {
			t.Errorf("%s: assigned from the prefill's device rows %v, AssignCentroids %v", name, got, want)
		}
		for i := range prs {
			if d := maxDiff(dev[i].sum, prs[i].sum); d > 1e-3 || len(dev[i].tail) != len(prs[i].tail) || maxDiff(dev[i].tail, prs[i].tail) > 1e-4 {
				t.Errorf("%s: prompt %d fed on the device: sum %.2g from the host's, %d tail values against %d", name, i, d, len(dev[i].tail), len(prs[i].tail))
			}
		}
		// Misuse: rows past the prompt, a prompt not fed to its end.
		if err := prs[1].Feed(make([]float32, c)); err == nil || !strings.Contains(err.Error(), "fed to a prompt") {
			t.Errorf("%s: a row past the prompt: %v", name, err)
		}
		part, err := rt.NewPromptRows(prompts[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.AssignPrefilled([]*PromptRows{prs[0], part}); err == nil || !strings.Contains(err.Error(), "rows fed") {
			t.Errorf("%s: a prompt not fed to its end: %v", name, err)
		}
		// FeedResidual's misuse: rows past the prompt, more rows than the
		// step has, a stream of another width, counts for other slots.
		x, err := m.B.Alloc(gpu.F32, 2, 3, c)
		if err != nil {
			t.Fatal(err)
		}
		wide, err := m.B.Alloc(gpu.F32, 2, 3, c+1)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []struct {
			x   gpu.Tensor
			prs []*PromptRows
			ns  []int
			msg string
		}{
			{x, []*PromptRows{prs[1], nil}, []int{1, 0}, "fed to a prompt"},
			{x, []*PromptRows{part, nil}, []int{4, 0}, "in a step of 3"},
			{wide, []*PromptRows{part, nil}, []int{1, 0}, "residual stream"},
			{x, []*PromptRows{part}, []int{1}, "residual stream"},
		} {
			if err := rt.FeedResidual(bad.x, bad.prs, bad.ns); err == nil || !strings.Contains(err.Error(), bad.msg) {
				t.Errorf("%s: FeedResidual %v with %d counts: %v, want %q", name, bad.x.Shape(), len(bad.ns), err, bad.msg)
			}
		}
		if part.Fed() != 0 {
			t.Errorf("%s: refused feeds fed %d rows", name, part.Fed())
		}
		m.B.Free(x)
		m.B.Free(wide)
	}
	// Where the prefill cannot assign: embedding features, no centroids,
	// an empty prompt.
	emb := f.hyperAdapter(t, unitRowsOf(f, 3, c))
	noCents := f.hyperAdapter(t, nil)
	noCents.Meta.Features = FeatureHidden
	for _, x := range []struct {
		a      *Adapter
		prompt []int32
	}{{emb, prompts[1]}, {noCents, prompts[1]}, {a, nil}} {
		rt, err := NewRuntime(f.models["ref"], x.a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.NewPromptRows(x.prompt); rt.AssignsInPrefill(x.prompt) || err == nil {
			t.Errorf("features %q, centroids %d, %d tokens: assigned in the prefill (err %v)", x.a.Meta.Features, x.a.Meta.Centroids, len(x.prompt), err)
		}
		rt.Free()
	}
}
