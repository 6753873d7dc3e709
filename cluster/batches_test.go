package cluster

import (
	"fmt"
	"slices"
	"testing"
)

// checkBatches checks the batch former's invariants: every sequence in
// exactly one batch, each batch from one cluster (its sequences' own), at
// most size per batch, indices increasing, no empty batch.
func checkBatches(t *testing.T, bs []Batch, assign []int, size int) {
	t.Helper()
	seen := make([]int, len(assign))
	for bi, b := range bs {
		if len(b.Seqs) == 0 || len(b.Seqs) > size || !slices.IsSorted(b.Seqs) {
			t.Fatalf("batch %d: %d sequences (size %d), sorted %v", bi, len(b.Seqs), size, slices.IsSorted(b.Seqs))
		}
		for _, s := range b.Seqs {
			seen[s]++
			if assign[s] != b.Cluster {
				t.Fatalf("batch %d of cluster %d holds sequence %d of cluster %d", bi, b.Cluster, s, assign[s])
			}
		}
	}
	for s, n := range seen {
		if n != 1 {
			t.Fatalf("sequence %d is in %d batches", s, n)
		}
	}
}

func TestFormBatches(t *testing.T) {
	rng := newRng(t)
	for _, tc := range []struct{ n, k, size int }{{1, 1, 1}, {5, 1, 2}, {100, 4, 8}, {129, 7, 32}, {1000, 32, 32}, {40, 40, 1}} {
		assign := make([]int, tc.n)
		for i := range assign {
			assign[i] = rng.IntN(tc.k)
		}
		bs := FormBatches(assign, tc.k, tc.size)
		checkBatches(t, bs, assign, tc.size)
		// The number of batches: ceil(size_c / S) per cluster.
		sizes := make([]int, tc.k)
		for _, a := range assign {
			sizes[a]++
		}
		want := 0
		for _, s := range sizes {
			want += ceilDiv(s, tc.size)
		}
		if len(bs) != want {
			t.Fatalf("%+v: %d batches, want %d", tc, len(bs), want)
		}
		if fmt.Sprint(bs) != fmt.Sprint(FormBatches(assign, tc.k, tc.size)) {
			t.Fatal("batch forming is not deterministic")
		}
	}
	// A cluster larger than S: full batches first, in index order.
	bs := FormBatches([]int{1, 0, 1, 1, 1, 1}, 2, 2)
	want := []Batch{{0, []int{1}}, {1, []int{0, 2}}, {1, []int{3, 4}}, {1, []int{5}}}
	if fmt.Sprint(bs) != fmt.Sprint(want) {
		t.Fatalf("FormBatches: %v, want %v", bs, want)
	}
}

func TestClusterBatches(t *testing.T) {
	rng := newRng(t)
	const n, c, size = 100, 64, 8
	xs, _ := blobs(rng, n, c, 13, 0.3)
	for _, ops := range bothOps(t) {
		x := upload(t, ops, xs, n, c)
		bs, res, err := ClusterBatches(ops, x, size, rng.Uint64())
		ops.Free(x)
		if err != nil {
			t.Fatal(err)
		}
		if res.Centroids.K != 13 {
			t.Fatalf("k = %d, want ceil(100/8) = 13", res.Centroids.K)
		}
		checkBatches(t, bs, res.Assign, size)
		t.Logf("%s: %d batches for %d clusters (sizes %v)", ops.Name(), len(bs), res.Centroids.K, res.Sizes)
	}
}
