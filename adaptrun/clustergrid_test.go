package adaptrun

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
)

// TestClusterGrid chooses a hyper-network's training cluster size with the
// rate on validation: the grid has a point per size (and none for the
// LoRA, which trains on no clusters), the row names the size of least
// validation loss, the adapter has as many centroids as that size cuts
// the training windows into, and the second seed trains at that size and
// not at the other.
// checkSecondSeed trains mc with o (seed 2) and fails unless its online
// test losses equal row r's second seed exactly when same: the second
// seed trained at mc's point of the grid (what names the point).
func checkSecondSeed(t *testing.T, e *Evaluator, sets Sets, mc Method, o TrainOpts, r Row, same bool, what string) {
	t.Helper()
	tr, err := Train(e.TB, e.Wte, e.Base, mc, sets.Train, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Seed = 2
	s2, err := e.Score(tr, sets.Test, GroupOnline, 1)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(s2.Loss, r.Test[1].Loss) != same {
		t.Fatalf("second seed: test losses equal to a basis trained at %s: %v, want %v", what, !same, same)
	}
}

func TestClusterGrid(t *testing.T) {
	m, w, sets, base := prepared(t)
	lora := Method{Name: "lora", Kind: KindLoRA, Rank: 2, Features: basisMethod.Features}
	grid := []int{2, 8}
	cfg := Config{Methods: []Method{basisMethod, lora}, LRs: []float64{3e-2}, ClusterGrid: grid, Seeds: 2, Primary: basisMethod.Name,
		Bootstrap: 10, Opts: TrainOpts{Batch: 4, Epochs: 1, Alpha: 1}}
	tb := m.B.(gpu.TrainBackend)
	e := &Evaluator{TB: tb, Wte: m.W.Wte, Base: base, Batch: 4, Seed: 1}
	res, firsts, err := Run(e, sets, w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lr := res.Rows[find(res.Rows, func(x Row) bool { return x.Method == "lora" })]
	if len(lr.LRVal) != 1 || lr.ClusterSize != 0 {
		t.Fatalf("the LoRA trained at %v (cluster size %d), want one point and no size", lr.LRVal, lr.ClusterSize)
	}
	r := res.Rows[find(res.Rows, func(x Row) bool { return x.Method == basisMethod.Name && x.Grouping == GroupOnline })]
	if len(r.LRVal) != len(grid) {
		t.Fatalf("validation at %d grid points, want %d: %v", len(r.LRVal), len(grid), r.LRVal)
	}
	key := func(cs int) string { return ClusterKey(GridKey(3e-2, 1, nil), cs, grid) }
	other := grid[0]
	if r.ClusterSize == other {
		other = grid[1]
	}
	if !slices.Contains(grid, r.ClusterSize) || r.Val != r.LRVal[key(r.ClusterSize)] || r.LRVal[key(other)] < r.Val {
		t.Fatalf("chose clusters of %d (validation %.5f), want the least of %v", r.ClusterSize, r.Val, r.LRVal)
	}
	n := len(sets.Train.Windows)
	if got, want := firsts[basisMethod.Name].Cents.K, cluster.DefaultK(n, r.ClusterSize); got != want {
		t.Fatalf("the chosen adapter has %d centroids, want %d (%d windows in clusters of %d)", got, want, n, r.ClusterSize)
	}
	if cluster.DefaultK(n, grid[0]) == cluster.DefaultK(n, grid[1]) {
		t.Fatalf("the grid's sizes cut %d windows into as many clusters: the test cannot tell them apart", n)
	}
	for _, c := range []struct {
		size int
		same bool
	}{{r.ClusterSize, true}, {other, false}} {
		mc := basisMethod
		mc.ClusterSize = c.size
		checkSecondSeed(t, e, sets, mc, TrainOpts{Batch: 4, Epochs: 1, Alpha: 1, LR: 3e-2, Seed: 2}, r, c.same, fmt.Sprintf("clusters of %d", c.size))
	}
	md := res.Markdown(res.Summarise())
	if !strings.Contains(md, fmt.Sprintf("clusters of %d |", r.ClusterSize)) || !strings.Contains(md, "training clusters of [2 8] windows") {
		t.Fatalf("the report does not name the chosen cluster size:\n%s", md)
	}
}
