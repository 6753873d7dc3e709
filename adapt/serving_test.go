package adapt

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// servingRuntime is a random hyper adapter with k centroids (k = 0: none)
// on a small random model on the reference backend.
func servingRuntime(t *testing.T, k int) *Runtime {
	t.Helper()
	cfg := model.Config{VocabSize: 97, NCtx: 16, NEmbd: 16, NHead: 2, NLayer: 1, LNEps: 1e-5}
	be := ref.New()
	w, err := model.Upload(be, cfg, model.RandomInit(cfg, 1), gpu.F32)
	if err != nil {
		t.Fatal(err)
	}
	m := &model.Model{Cfg: cfg, W: w, B: be}
	base, err := BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	hc := DefaultHyper(cfg.NEmbd, cfg.VocabSize, 3)
	ts := InitHyper(hc, 2)
	meta := Meta{Kind: KindHyper, Rank: 3, Alpha: 1, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base}
	if k > 0 {
		rng := rand.New(rand.NewPCG(3, 4))
		c := make([]float32, k*cfg.NEmbd)
		for i := range c {
			c[i] = float32(rng.NormFloat64())
		}
		meta.Centroids = k
		ts = append(ts, model.HostTensor{Name: CentroidsTensor, Shape: []int{k, cfg.NEmbd}, Data: c})
	}
	rt, err := NewRuntime(m, &Adapter{Meta: meta, Tensors: ts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Free)
	return rt
}

var servingSeqs = [][]int32{{1, 2, 3}, {50, 51}, {7}, {90, 91, 92, 93}, {1, 2, 4}}

// logitsOf runs seqs through m with head, one cache slot each: the
// last positions' logits.
func logitsOf(t *testing.T, m *model.Model, seqs [][]int32, head model.Adapter) []float32 {
	t.Helper()
	return readForward(t, m, seqs, true, head)
}

// The serving helpers give the same clusters and logits as Runtime.Plan:
// online assignment, k-means of a group, and a plan made from given means
// whose slots are assigned by hand.
func TestServingPlans(t *testing.T) {
	rt := servingRuntime(t, 3)
	online, err := rt.Plan(servingSeqs, PlanOptions{Mode: ModeOnline})
	if err != nil {
		t.Fatal(err)
	}
	defer online.Free()
	as, err := rt.AssignCentroids(servingSeqs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(as, online.Cluster) {
		t.Errorf("AssignCentroids %v, Plan online %v", as, online.Cluster)
	}
	cp, err := rt.CentroidPlan(len(servingSeqs))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Free()
	if cp.K != 3 || !slices.Equal(cp.Cluster, []int{-1, -1, -1, -1, -1}) {
		t.Fatalf("centroid plan K=%d clusters %v", cp.K, cp.Cluster)
	}
	if got := logitsOf(t, rt.M, servingSeqs, cp.Adapter(nil)); !slices.Equal(got, logitsOf(t, rt.M, servingSeqs, nil)) {
		t.Errorf("a plan whose slots have cluster -1 changes the logits")
	}
	cl := slices.Clone(as)
	cl[2] = -1 // one slot unadapted
	if err := cp.SetClusters(cl); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		cl   []int
		want string
	}{
		{[]int{0, 3, 0, 0, 0}, "sequence 1 gets cluster 3, but the plan has 3"}, // K is 3
		{[]int{-2}, "sequence 0 gets cluster -2"},
	} {
		if err := cp.SetClusters(bad.cl); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetClusters(%v): %v, want an error containing %q", bad.cl, err, bad.want)
		}
		if !slices.Equal(cp.Cluster, cl) {
			t.Errorf("a refused SetClusters(%v) changed the clusters to %v", bad.cl, cp.Cluster)
		}
	}
	on := slices.Repeat([]bool{true}, len(servingSeqs))
	on[2] = false
	if got, want := logitsOf(t, rt.M, servingSeqs, cp.Adapter(nil)), logitsOf(t, rt.M, servingSeqs, online.Adapter(on)); !slices.Equal(got, want) {
		t.Errorf("centroid plan's logits differ from Plan(ModeOnline)'s")
	}

	const k = 2
	batch, err := rt.Plan(servingSeqs, PlanOptions{Mode: ModeBatch, K: k, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer batch.Free()
	assign, means, err := rt.ClusterSeqs(servingSeqs, k, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(assign, batch.Cluster) || !slices.Equal(means, batch.Means) {
		t.Errorf("ClusterSeqs %v, Plan batch %v (or their means differ)", assign, batch.Cluster)
	}
	// The means in other rows of a larger plan give the same factors.
	c := rt.M.Cfg.NEmbd
	pool := make([]float32, 4*c)
	copy(pool[3*c:], means[:c])
	copy(pool[1*c:], means[c:])
	mp, err := rt.PlanMeans(len(servingSeqs), pool)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Free()
	for i, a := range assign {
		mp.Cluster[i] = []int{3, 1}[a]
	}
	if got, want := logitsOf(t, rt.M, servingSeqs, mp.Adapter(nil)), logitsOf(t, rt.M, servingSeqs, batch.Adapter(nil)); !slices.Equal(got, want) {
		t.Errorf("PlanMeans's logits differ from Plan(ModeBatch)'s")
	}
}

func TestServingErrors(t *testing.T) {
	rt := servingRuntime(t, 0)
	for _, c := range []struct {
		what string
		err  func() error
		want string
	}{
		{"centroid plan without centroids", func() error { _, err := rt.CentroidPlan(2); return err }, "stores none"},
		{"assignment without centroids", func() error { _, err := rt.AssignCentroids(servingSeqs); return err }, "stores none"},
		{"means not rows", func() error { _, err := rt.PlanMeans(2, make([]float32, 17)); return err }, "not (K, 16) rows"},
		{"no means", func() error { _, err := rt.PlanMeans(2, nil); return err }, "not (K, 16) rows"},
		{"no slots", func() error { _, err := rt.PlanMeans(0, make([]float32, 16)); return err }, "at least one"},
		{"no sequences", func() error { _, _, err := rt.ClusterSeqs(nil, 1, 0); return err }, "no sequences"},
		{"token outside the vocabulary", func() error { _, _, err := rt.ClusterSeqs([][]int32{{200}}, 1, 0); return err }, "outside the vocabulary"},
	} {
		if err := c.err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.what, err, c.want)
		}
	}
}
