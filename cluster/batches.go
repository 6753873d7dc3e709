package cluster

import (
	"fmt"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Batch is a group of sequences of one cluster.
type Batch struct {
	Cluster int   // the cluster every sequence belongs to
	Seqs    []int // sequence indices, increasing
}

// FormBatches turns an assignment of sequences to k clusters into batches
// of at most size sequences, each from one cluster, as the paper's offline
// setting wants: clusters in increasing index, each cluster's sequences in
// increasing index, a cluster of n > size sequences split into n/size full
// batches and one of the rest. Empty clusters give no batch. Every sequence
// is in exactly one batch. It panics on size < 1 or a label outside [0, k).
func FormBatches(assign []int, k, size int) []Batch {
	if size < 1 {
		panic(fmt.Sprintf("cluster: FormBatches: batch size %d", size))
	}
	members := make([][]int, k)
	for i, a := range assign {
		if a < 0 || a >= k {
			panic(fmt.Sprintf("cluster: FormBatches: sequence %d has cluster %d, want [0, %d)", i, a, k))
		}
		members[a] = append(members[a], i)
	}
	var out []Batch
	for cl, m := range members {
		for len(m) > 0 {
			n := min(size, len(m))
			out = append(out, Batch{Cluster: cl, Seqs: m[:n:n]})
			m = m[n:]
		}
	}
	return out
}

// ClusterBatches clusters the features x (N, C) F32 on ops into
// k = ceil(N / size) clusters (k-means with the given seed and default
// iterations) and forms batches of at most size sequences of one cluster.
func ClusterBatches(ops Ops, x gpu.Tensor, size int, seed uint64) ([]Batch, *Result, error) {
	if size < 1 {
		return nil, nil, fmt.Errorf("cluster: batch size %d: need at least 1", size)
	}
	res, err := KMeans(ops, x, Config{BatchSize: size, Seed: seed})
	if err != nil {
		return nil, nil, err
	}
	return FormBatches(res.Assign, res.Centroids.K, size), res, nil
}
