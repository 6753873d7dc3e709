package cluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model/tensorfile"
)

// Centroids are the K cluster means of a k-means run, kept to assign new
// sequences online (each to the nearest centroid, as in training).
type Centroids struct {
	K, C int
	Data []float32 // (K, C) row-major
	Meta CentroidsMeta
}

// CentroidsMeta describes how centroids were made; it is saved as JSON in
// the safetensors metadata under MetaKey.
type CentroidsMeta struct {
	Feature    string  `json:"feature"` // FeatureKind
	Points     int     `json:"points"`  // N clustered
	Seed       uint64  `json:"seed"`
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
	Inertia    float64 `json:"inertia"`
	Sizes      []int   `json:"sizes,omitempty"` // (K) points per cluster
}

// Names in the centroids file.
const (
	TensorName = "centroids"         // the (K, C) F32 tensor
	MetaKey    = "chameleon.cluster" // safetensors metadata key of the JSON CentroidsMeta
)

// Row returns centroid k (C values, aliasing Data).
func (c *Centroids) Row(k int) []float32 { return c.Data[k*c.C : (k+1)*c.C] }

// Save writes the centroids as safetensors: tensor TensorName (K, C) F32 and
// the JSON metadata under MetaKey.
func (c *Centroids) Save(w io.Writer) error {
	if len(c.Data) != c.K*c.C {
		return fmt.Errorf("cluster: centroids hold %d values, want K*C = %d*%d", len(c.Data), c.K, c.C)
	}
	t, err := tensorfile.FromFloat32(TensorName, tensorfile.F32, []int{c.K, c.C}, c.Data)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	meta, err := json.Marshal(c.Meta)
	if err != nil {
		return fmt.Errorf("cluster: centroids metadata: %w", err)
	}
	return tensorfile.WriteSafetensors(w, []tensorfile.Tensor{t}, map[string]string{MetaKey: string(meta)})
}

// SaveFile writes the centroids to path (see Save).
func (c *Centroids) SaveFile(path string) error {
	var b bytes.Buffer
	if err := c.Save(&b); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("cluster: saving centroids: %w", err)
	}
	return nil
}

// ReadCentroids reads centroids written by Save, validating the tensor's
// name, rank and values (finite) and the metadata.
func ReadCentroids(r io.ReaderAt, size int64) (*Centroids, error) {
	f, err := tensorfile.ReadSafetensors(r, size)
	if err != nil {
		return nil, fmt.Errorf("cluster: centroids: %w", err)
	}
	info, ok := f.Info(TensorName)
	if !ok {
		return nil, fmt.Errorf("cluster: centroids file has no tensor %q", TensorName)
	}
	if len(info.Shape) != 2 || info.Shape[0] == 0 || info.Shape[1] == 0 {
		return nil, fmt.Errorf("cluster: centroids tensor %q has shape %v, want (K, C) with K, C >= 1", TensorName, info.Shape)
	}
	data, err := f.Float32(TensorName)
	if err != nil {
		return nil, fmt.Errorf("cluster: centroids: %w", err)
	}
	c := &Centroids{K: int(info.Shape[0]), C: int(info.Shape[1]), Data: data}
	if err := checkFinite(data, c.C); err != nil {
		return nil, fmt.Errorf("cluster: centroids file: %w", err)
	}
	if m, ok := f.Metadata[MetaKey]; ok {
		if err := json.Unmarshal([]byte(m), &c.Meta); err != nil {
			return nil, fmt.Errorf("cluster: centroids metadata %q: %w", MetaKey, err)
		}
		if c.Meta.Sizes != nil && len(c.Meta.Sizes) != c.K {
			return nil, fmt.Errorf("cluster: centroids metadata lists %d cluster sizes for K = %d", len(c.Meta.Sizes), c.K)
		}
	}
	return c, nil
}

// LoadCentroids reads centroids from path (see ReadCentroids).
func LoadCentroids(path string) (*Centroids, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: loading centroids: %w", err)
	}
	return ReadCentroids(bytes.NewReader(b), int64(len(b)))
}

// Assign returns the nearest centroid of each feature, features (N, C)
// row-major on the host: squared Euclidean distance, ties to the lowest
// index, the same rule as k-means. It fails if len(features) is not a
// multiple of C or a feature is not finite.
func (c *Centroids) Assign(features []float32) ([]int, error) {
	if c.C == 0 || len(features)%c.C != 0 {
		return nil, fmt.Errorf("cluster: %d feature values are not rows of C = %d", len(features), c.C)
	}
	if err := checkFinite(features, c.C); err != nil {
		return nil, err
	}
	n := len(features) / c.C
	out := make([]int, n)
	for i := range out {
		x := features[i*c.C : (i+1)*c.C]
		best := math.Inf(1)
		for k := 0; k < c.K; k++ {
			if d := sqDist(x, c.Row(k)); d < best {
				best, out[i] = d, k
			}
		}
	}
	return out, nil
}

// Nearest returns, for each feature (N, C) row-major on the host, the
// indices of its m nearest centroids (all of them when m >= K), nearest
// first: squared Euclidean distance, ties to the lower index, so that
// each row's first is Assign's. It fails as Assign does, or for m < 1.
func (c *Centroids) Nearest(features []float32, m int) ([][]int, error) {
	if m < 1 {
		return nil, fmt.Errorf("cluster: %d nearest centroids: want at least 1", m)
	}
	if c.C == 0 || len(features)%c.C != 0 {
		return nil, fmt.Errorf("cluster: %d feature values are not rows of C = %d", len(features), c.C)
	}
	if err := checkFinite(features, c.C); err != nil {
		return nil, err
	}
	m = min(m, c.K)
	out := make([][]int, len(features)/c.C)
	d := make([]float64, c.K)
	for i := range out {
		x := features[i*c.C : (i+1)*c.C]
		idx := make([]int, c.K)
		for k := range idx {
			idx[k], d[k] = k, sqDist(x, c.Row(k))
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(d[a], d[b]) })
		out[i] = idx[:m:m]
	}
	return out, nil
}

// AssignOn assigns the features x (N, C) F32 on ops to the nearest
// centroid with the assignment kernel (same rule as Assign).
func (c *Centroids) AssignOn(ops Ops, x gpu.Tensor) ([]int, error) {
	xs := dims("AssignOn", "x", x, 2)
	n := xs[0]
	if xs[1] != c.C {
		panic(fmt.Sprintf("cluster: AssignOn: features have %d channels, centroids %d", xs[1], c.C))
	}
	host, err := ops.ReadF32(x)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading features: %w", err)
	}
	if err := checkFinite(host, c.C); err != nil {
		return nil, err
	}
	r := &run{ops: ops}
	defer r.free()
	cents := r.alloc(gpu.F32, c.K, c.C)
	assign := r.alloc(gpu.I32, n)
	dist := r.alloc(gpu.F32, n)
	// Scaled by a power of two where f32 squared distances would overflow
	// or underflow (see rangeScale): the same choices as Assign's float64.
	data := c.Data
	if scale := rangeScale(host, data); scale != 1 {
		data = scaled(data, scale)
		x = r.alloc(gpu.F32, n, c.C)
		r.write(x, scaled(host, scale))
	}
	r.write(cents, data)
	if r.err != nil {
		return nil, r.err
	}
	ops.Assign(assign, dist, x, cents, 0, false)
	a, err := ops.ReadI32(assign)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading assignments: %w", err)
	}
	out := make([]int, n)
	for i, v := range a {
		out[i] = int(v)
	}
	return out, nil
}
