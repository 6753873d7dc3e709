package serve

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/gpu/ref"
	"github.com/chameleon-llm/chameleon/model"
)

// testRank is the rank of the test adapters.
const testRank = 4

// testHyper is a random hyper-network adapter for m storing k training
// centroids (random unit vectors), written with adapt.Save and read back
// with adapt.Load. PyTorch's initialisation leaves the generated factors
// dominated by the last layer's bias, nearly the same for every input: the
// weights are scaled up (and alpha down) so that each cluster's mean
// feature gives clearly different factors, and the update is about as
// large as the base logits.
func testHyper(t testing.TB, m *model.Model, k int, seed uint64, sites ...string) *adapt.Adapter {
	t.Helper()
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg := adapt.DefaultHyper(m.Cfg.NEmbd, m.Cfg.VocabSize, testRank)
	cfg.Alpha = 5e-4
	ts := adapt.InitHyper(cfg, seed)
	for i := 0; i < len(ts); i += 2 { // weights
		for j := range ts[i].Data {
			ts[i].Data[j] *= 8
		}
	}
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: cfg.Rank, Alpha: cfg.Alpha, Hidden: cfg.Hidden, Dropout: cfg.Dropout, Base: base, Sites: sites}
	// Generated updates of the block sites: their last layers scaled so
	// that, at this alpha, each changes its layer's output by a few percent.
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, s := range meta.Spec()[len(ts):] {
		s.Data = make([]float32, gpu.Numel(s.Shape))
		for j := range s.Data {
			s.Data[j] = float32(rng.NormFloat64() * 3)
		}
		ts = append(ts, s)
	}
	if k > 0 {
		meta.Centroids = k
		ts = append(ts, model.HostTensor{Name: adapt.CentroidsTensor, Shape: []int{k, m.Cfg.NEmbd}, Data: unitRows(k, m.Cfg.NEmbd, seed)})
	}
	return saveLoad(t, &adapt.Adapter{Meta: meta, Tensors: ts}, base)
}

// testLoRA is a static LoRA adapter for m with random A and B (InitStatic
// leaves B zero: no effect).
func testLoRA(t testing.TB, m *model.Model, seed uint64) *adapt.Adapter {
	t.Helper()
	base, err := adapt.BaseOfModel(m)
	if err != nil {
		t.Fatal(err)
	}
	c, v := m.Cfg.NEmbd, m.Cfg.VocabSize
	ts := adapt.InitStatic(1, testRank, c, v, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for j := range ts[1].Data {
		ts[1].Data[j] = float32(rng.NormFloat64())
	}
	meta := adapt.Meta{Kind: adapt.KindLoRA, Rank: testRank, Alpha: 1, Experts: 1, Base: base}
	return saveLoad(t, &adapt.Adapter{Meta: meta, Tensors: ts}, base)
}

func saveLoad(t testing.TB, a *adapt.Adapter, base adapt.Base) *adapt.Adapter {
	t.Helper()
	path := filepath.Join(t.TempDir(), string(a.Meta.Kind)+".safetensors")
	if err := adapt.Save(path, a); err != nil {
		t.Fatal(err)
	}
	got, err := adapt.Load(path, base)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// unitRows are k random unit vectors of c values.
func unitRows(k, c int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]float32, k*c)
	for i := 0; i < k; i++ {
		row := out[i*c : (i+1)*c]
		var n float64
		for j := range row {
			x := rng.NormFloat64()
			row[j], n = float32(x), n+x*x
		}
		for j := range row {
			row[j] = float32(float64(row[j]) / math.Sqrt(n))
		}
	}
	return out
}

// newAdaptive serves adapter a on m; it is closed when the test ends
// (after the servers made later have shut down).
func newAdaptive(t testing.TB, m *model.Model, a *adapt.Adapter, o AdaptOptions) *Adaptive {
	t.Helper()
	ad, err := NewAdaptive(m, a, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ad.Close)
	return ad
}

// refLogProbs is the log-softmax of the last-position logits of prompt on
// the reference backend's copy of the tiny model, through head (nil: the
// base model).
func refLogProbs(t testing.TB, m *model.Model, prompt []int32, head func() model.Adapter) []float64 {
	t.Helper()
	c, err := m.NewCache(1, len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	defer m.FreeCache(c)
	var h model.Adapter
	if head != nil {
		h = head()
	}
	lt, err := m.ForwardAdapted(c, [][]int32{prompt}, true, h)
	if err != nil {
		t.Fatal(err)
	}
	defer m.B.Free(lt)
	x, err := m.B.ReadF32(lt)
	if err != nil {
		t.Fatal(err)
	}
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - mx - math.Log(s)
	}
	return out
}

// topValues are the k largest values, descending.
func topValues(x []float64, k int) []float64 {
	top := make([]float64, 0, k+1)
	for _, v := range x {
		i := len(top)
		for i > 0 && v > top[i-1] {
			i--
		}
		if i < k {
			top = append(top, 0)
			copy(top[i+1:], top[i:])
			top[i] = v
			if len(top) > k {
				top = top[:k]
			}
		}
	}
	return top
}

// refTiny is the tiny model on the reference backend.
func refTiny(t testing.TB) *model.Model {
	m, _ := tinyModel(t, ref.New())
	return m
}

var _ gpu.Backend = (*ref.Backend)(nil)
