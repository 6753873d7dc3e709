package cluster

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
)

// DefaultMaxIter bounds Lloyd's iterations when Config.MaxIter is 0.
const DefaultMaxIter = 100

// Config configures KMeans.
type Config struct {
	K         int       // clusters; 0 means ceil(N / BatchSize)
	BatchSize int       // sequences per batch, used for the default K
	MaxIter   int       // Lloyd iterations at most; 0 means DefaultMaxIter
	Seed      uint64    // seeds k-means++
	Init      []float32 // optional (K, C) starting centroids instead of k-means++
}

// Result is a clustering of N points into K clusters.
type Result struct {
	Centroids  *Centroids // (K, C) cluster means
	Assign     []int      // (N) each point's cluster
	Dist       []float32  // (N) squared distance of each point to its centroid
	Sizes      []int      // (K) points per cluster; 0 for a cluster left empty
	Inertia    float64    // sum of Dist
	Iterations int        // centroid updates run
	Converged  bool       // assignments stopped changing within MaxIter
	Reseeds    int        // empty clusters re-seeded along the way
}

// ErrNonFinite is returned (wrapped) when a feature holds NaN or Inf.
var ErrNonFinite = errors.New("non-finite feature")

// checkFinite returns an error naming the first non-finite element of the
// (N, C) matrix x.
func checkFinite(x []float32, c int) error {
	for i, v := range x {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("cluster: feature %d, channel %d is %v: %w (a NaN or Inf in the embedding table?)",
				i/c, i%c, v, ErrNonFinite)
		}
	}
	return nil
}

// DefaultK is ceil(n / batchSize): as many clusters as batches of batchSize.
func DefaultK(n, batchSize int) int { return ceilDiv(n, batchSize) }

// KMeansHost is KMeans of the (N, dim) features f on the plain-Go
// reference ops: for the small batches where a device round trip costs
// more than the clustering.
func KMeansHost(f []float32, dim int, cfg Config) (*Result, error) {
	if dim < 1 || len(f)%dim != 0 {
		return nil, fmt.Errorf("cluster: %d feature values are not rows of %d", len(f), dim)
	}
	ops := NewRefOps()
	x, err := ops.Alloc(gpu.F32, len(f)/dim, dim)
	if err != nil {
		return nil, err
	}
	defer ops.Free(x)
	if err := ops.Write(x, f); err != nil {
		return nil, err
	}
	return KMeans(ops, x, cfg)
}

// KMeans clusters the rows of x (N, C) F32 (features on ops): k-means++
// seeding, then Lloyd iterations on ops until no assignment changes or
// cfg.MaxIter. It fails if a feature is not finite, if K is not in [1, N], or
// if a device operation fails. Deterministic for cfg.Seed on one backend.
func KMeans(ops Ops, x gpu.Tensor, cfg Config) (*Result, error) {
	xs := dims("KMeans", "x", x, 2)
	n, c := xs[0], xs[1]
	want("KMeans", "x", x, gpu.F32, n, c)
	if n == 0 || c == 0 {
		return nil, fmt.Errorf("cluster: k-means of %d points of %d channels: need at least one of each", n, c)
	}
	host, err := ops.ReadF32(x)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading features: %w", err)
	}
	if err := checkFinite(host, c); err != nil {
		return nil, err
	}
	k := cfg.K
	if k == 0 {
		if cfg.BatchSize <= 0 {
			return nil, fmt.Errorf("cluster: k-means needs K or a positive BatchSize, got K = 0, BatchSize = %d", cfg.BatchSize)
		}
		k = DefaultK(n, cfg.BatchSize)
	}
	if k < 1 {
		return nil, fmt.Errorf("cluster: k = %d: need at least one cluster", k)
	}
	if k > n {
		return nil, fmt.Errorf("cluster: k = %d larger than the batch of %d sequences (k-means needs a point per cluster)", k, n)
	}
	maxIter := cfg.MaxIter
	if maxIter <= 0 {
		maxIter = DefaultMaxIter
	}
	if cfg.Init != nil {
		if len(cfg.Init) != k*c {
			return nil, fmt.Errorf("cluster: Init holds %d values, want K*C = %d*%d", len(cfg.Init), k, c)
		}
		if err := checkFinite(cfg.Init, c); err != nil {
			return nil, fmt.Errorf("cluster: Init: %w", err)
		}
	}
	r := &run{ops: ops, x: x, host: host, n: n, c: c, k: k}
	defer r.free()
	scale := rangeScale(host, cfg.Init)
	if scale != 1 {
		if err := r.rescale(&cfg, scale); err != nil {
			return nil, err
		}
	}
	res, err := r.kmeans(cfg, maxIter)
	if err != nil || scale == 1 {
		return res, err
	}
	res.unscale(scale)
	return res, nil
}

// Squared distances are summed in f32 on the device: coordinates much
// larger than 1 overflow them to +Inf (every point then ties with the
// first centroid), much smaller ones underflow them to 0 (every point
// ties again). KMeans therefore runs on features scaled by a power of
// two, which is exact and changes no comparison, whenever their largest
// magnitude lies outside [minScaled, maxScaled], and scales the results
// back.
const (
	minScaled = 0x1p-32
	maxScaled = 0x1p32
)

// rangeScale is the power of two that brings the largest magnitude of the
// values of xs into [0.5, 1), or 1 when it already lies in [minScaled,
// maxScaled] (or every value is 0).
func rangeScale(xs ...[]float32) float64 {
	var big float64
	for _, x := range xs {
		for _, v := range x {
			big = max(big, math.Abs(float64(v)))
		}
	}
	if big == 0 || (big >= minScaled && big <= maxScaled) {
		return 1
	}
	_, exp := math.Frexp(big)
	return math.Ldexp(1, -exp)
}

// scaled returns x times scale (a power of two), nil for nil.
func scaled(x []float32, scale float64) []float32 {
	if x == nil {
		return nil
	}
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(float64(v) * scale)
	}
	return out
}

// rescale makes the run cluster its features times scale: a scaled copy
// on the device, on the host, and of cfg.Init.
func (r *run) rescale(cfg *Config, scale float64) error {
	r.host = scaled(r.host, scale)
	cfg.Init = scaled(cfg.Init, scale)
	r.x = r.alloc(gpu.F32, r.n, r.c)
	r.write(r.x, r.host)
	return r.err
}

// unscale turns a result of features times scale into that of the
// features: centroids divided by scale, distances and inertia by scale².
// A distance past the largest float32 becomes +Inf; Inertia, a float64,
// stays finite.
func (res *Result) unscale(scale float64) {
	cs := res.Centroids
	cs.Data = scaled(cs.Data, 1/scale)
	res.Inertia = 0
	for i, d := range res.Dist {
		u := float64(d) / (scale * scale)
		res.Dist[i] = float32(u)
		res.Inertia += u
	}
	cs.Meta.Inertia = res.Inertia
}

// run holds one k-means run's device tensors.
type run struct {
	ops     Ops
	x       gpu.Tensor
	host    []float32 // x on the host, (N, C)
	n, c, k int
	live    []gpu.Tensor
	err     error // first allocation or upload error
}

func (r *run) alloc(dt gpu.DType, shape ...int) gpu.Tensor {
	if r.err != nil {
		return nil
	}
	t, err := r.ops.Alloc(dt, shape...)
	if err != nil {
		r.err = fmt.Errorf("cluster: %w", err)
		return nil
	}
	r.live = append(r.live, t)
	return t
}

func (r *run) write(t gpu.Tensor, data any) {
	if r.err == nil {
		if err := r.ops.Write(t, data); err != nil {
			r.err = fmt.Errorf("cluster: %w", err)
		}
	}
}

func (r *run) free() {
	for _, t := range r.live {
		r.ops.Free(t)
	}
}

// readAssign reads the assignment and distances back.
func (r *run) readAssign(assign, dist gpu.Tensor) ([]int32, []float32, error) {
	a, err := r.ops.ReadI32(assign)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: reading assignments: %w", err)
	}
	d, err := r.ops.ReadF32(dist)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: reading distances: %w", err)
	}
	return a, d, nil
}

// (Over 80 lines: the k-means iterations on the device (seeding, assignment,
// update, convergence) over buffers they share.)
func (r *run) kmeans(cfg Config, maxIter int) (*Result, error) {
	n, c, k := r.n, r.c, r.k
	assignT := r.alloc(gpu.I32, n)
	distT := r.alloc(gpu.F32, n)
	cents := r.alloc(gpu.F32, k, c)
	next := r.alloc(gpu.F32, k, c)
	orderT := r.alloc(gpu.I32, n)
	offsetsT := r.alloc(gpu.I32, k+1)
	reseedT := r.alloc(gpu.I32, k)
	if r.err != nil {
		return nil, r.err
	}
	var assign []int32
	var dist []float32
	if cfg.Init != nil {
		r.write(cents, cfg.Init)
		if r.err != nil {
			return nil, r.err
		}
		r.ops.Assign(assignT, distT, r.x, cents, 0, false)
		var err error
		if assign, dist, err = r.readAssign(assignT, distT); err != nil {
			return nil, err
		}
	} else {
		init, err := r.seed(cfg.Seed, assignT, distT)
		if err != nil {
			return nil, err
		}
		r.write(cents, init)
		if r.err != nil {
			return nil, r.err
		}
		// Seeding left every point assigned to its nearest seed.
		if assign, dist, err = r.readAssign(assignT, distT); err != nil {
			return nil, err
		}
	}
	res := &Result{}
	for res.Iterations < maxIter {
		order, offsets, sizes := group(assign, k)
		reseed := reseedEmpty(assign, dist, sizes)
		for _, p := range reseed {
			if p >= 0 {
				res.Reseeds++
			}
		}
		r.write(orderT, order)
		r.write(offsetsT, offsets)
		r.write(reseedT, reseed)
		if r.err != nil {
			return nil, r.err
		}
		r.ops.Update(next, r.x, cents, orderT, offsetsT, reseedT)
		cents, next = next, cents
		r.ops.Assign(assignT, distT, r.x, cents, 0, false)
		a, d, err := r.readAssign(assignT, distT)
		if err != nil {
			return nil, err
		}
		res.Iterations++
		same := slices.Equal(a, assign)
		assign, dist = a, d
		if same {
			res.Converged = true
			break
		}
	}
	data, err := r.ops.ReadF32(cents)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading centroids: %w", err)
	}
	res.Assign = make([]int, n)
	res.Sizes = make([]int, k)
	for i, a := range assign {
		res.Assign[i] = int(a)
		res.Sizes[a]++
	}
	res.Dist = dist
	for _, d := range dist {
		res.Inertia += float64(d)
	}
	res.Centroids = &Centroids{K: k, C: c, Data: data, Meta: CentroidsMeta{
		Feature: FeatureKind, Points: n, Seed: cfg.Seed, Iterations: res.Iterations,
		Converged: res.Converged, Inertia: res.Inertia, Sizes: slices.Clone(res.Sizes)}}
	return res, nil
}

// seed picks k centroids by k-means++: the first uniformly, each next one
// with probability proportional to its squared distance to the nearest
// centroid chosen so far. The distances come from Assign run over one new
// centroid at a time, merging into the running (assign, dist), which ends as
// the assignment of every point to its nearest seed. When every remaining
// point coincides with a chosen centroid (all distances 0), the lowest-index
// point not yet chosen is taken. It returns the (K, C) seeds.
func (r *run) seed(seed uint64, assignT, distT gpu.Tensor) ([]float32, error) {
	n, c, k := r.n, r.c, r.k
	rng := rand.New(rand.NewPCG(seed, 0x6b2d6d65616e732b)) // "k-means+"
	row := r.alloc(gpu.F32, 1, c)
	if r.err != nil {
		return nil, r.err
	}
	out := make([]float32, 0, k*c)
	chosen := make([]bool, n)
	p := rng.IntN(n)
	for j := 0; j < k; j++ {
		chosen[p] = true
		pt := r.host[p*c : (p+1)*c]
		out = append(out, pt...)
		r.write(row, pt)
		if r.err != nil {
			return nil, r.err
		}
		r.ops.Assign(assignT, distT, r.x, row, j, j > 0)
		if j == k-1 {
			break
		}
		d, err := r.ops.ReadF32(distT)
		if err != nil {
			return nil, fmt.Errorf("cluster: k-means++ distances: %w", err)
		}
		p = sampleD2(rng, d, chosen)
	}
	return out, nil
}

// sampleD2 draws an index with probability proportional to d (a point
// already chosen has distance 0, so it is never drawn again); if every
// distance is 0 it returns the lowest index not yet chosen.
func sampleD2(rng *rand.Rand, d []float32, chosen []bool) int {
	var total float64
	for _, v := range d {
		total += float64(v)
	}
	u := rng.Float64() // drawn even when unused, so the stream stays aligned
	if total > 0 {
		target := u * total
		var cum float64
		last := -1
		for i, v := range d {
			if v <= 0 || chosen[i] {
				continue
			}
			cum += float64(v)
			last = i
			if cum > target {
				return i
			}
		}
		if last >= 0 { // rounding left target at the very end
			return last
		}
	}
	for i, ch := range chosen {
		if !ch {
			return i
		}
	}
	panic("cluster: k-means++ ran out of points") // k <= n is checked before
}

// group lists the points of each cluster, in increasing index: order(N) and
// offsets(K+1) as Update wants them, and the cluster sizes.
func group(assign []int32, k int) (order, offsets []int32, sizes []int) {
	sizes = make([]int, k)
	for _, a := range assign {
		sizes[a]++
	}
	offsets = make([]int32, k+1)
	for i, s := range sizes {
		offsets[i+1] = offsets[i] + int32(s)
	}
	order = make([]int32, len(assign))
	fill := slices.Clone(offsets[:k])
	for i, a := range assign {
		order[fill[a]] = int32(i)
		fill[a]++
	}
	return order, offsets, sizes
}

// reseedEmpty picks, for each empty cluster in increasing index, the point
// farthest from its own centroid (ties to the lowest index) among points at
// a positive distance whose cluster keeps at least one other point, each
// point used once; -1 where there is none (the cluster keeps its previous
// centroid). sizes is not modified.
func reseedEmpty(assign []int32, dist []float32, sizes []int) []int32 {
	out := make([]int32, len(sizes))
	var empty []int
	for i, s := range sizes {
		out[i] = -1
		if s == 0 {
			empty = append(empty, i)
		}
	}
	if len(empty) == 0 {
		return out
	}
	left := slices.Clone(sizes)
	cand := make([]int, 0, len(assign))
	for i, d := range dist {
		if d > 0 {
			cand = append(cand, i)
		}
	}
	slices.SortStableFunc(cand, func(a, b int) int {
		switch {
		case dist[a] > dist[b]:
			return -1
		case dist[a] < dist[b]:
			return 1
		}
		return 0
	})
	next := 0
	for _, e := range empty {
		for next < len(cand) && left[assign[cand[next]]] < 2 {
			next++
		}
		if next == len(cand) {
			break
		}
		p := cand[next]
		next++
		out[e] = int32(p)
		left[assign[p]]--
	}
	return out
}
