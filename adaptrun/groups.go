package adaptrun

import "github.com/chameleon-llm/chameleon/cluster"

// group is a batch of windows adapted together: member i's rows use
// update Cluster[i] in [0, K) (-1: none); a hyper-network gets Means
// (K, feature width).
type group struct {
	Members []int
	Cluster []int
	K       int
	Means   []float32
}

// chunks cuts idx into consecutive pieces of at most size.
func chunks(idx []int, size int) [][]int {
	var out [][]int
	for len(idx) > 0 {
		n := min(size, len(idx))
		out = append(out, idx[:n:n])
		idx = idx[n:]
	}
	return out
}

// mixedGroups cuts perm into batches of size windows that mix clusters:
// member i uses its cluster's update, generated from the cluster's
// centroid (standardised), as a served batch with online assignment does.
func mixedGroups(res *cluster.Result, perm []int, size int, mu, sd []float64) []group {
	var gs []group
	for _, ch := range chunks(perm, size) {
		g := group{Members: ch}
		local := map[int]int{}
		for _, wi := range ch {
			a := res.Assign[wi]
			j, ok := local[a]
			if !ok {
				j = len(local)
				local[a] = j
				g.Means = append(g.Means, Standardize(res.Centroids.Row(a), mu, sd)...)
			}
			g.Cluster = append(g.Cluster, j)
		}
		g.K = len(local)
		gs = append(gs, g)
	}
	return gs
}
