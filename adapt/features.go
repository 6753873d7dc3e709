package adapt

import (
	"fmt"
	"math"

	"github.com/chameleon-llm/chameleon/cluster"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// FeatureWidth is the width of the adapter's features (its hyper-network
// input and its centroids).
func (r *Runtime) FeatureWidth() int {
	d, _ := FeatureDim(r.Meta.Features, r.Meta.Base.Config.NEmbd)
	return d
}

// features computes the sequences' features of the adapter's kind: on the
// cluster ops' device as ft (N, dim) (the caller frees it) and on the
// host. Embedding means come from the WGSL feature kernel; hidden-state
// means from a forward of the base model over the sequences (HiddenMeans).
func (r *Runtime) features(seqs [][]int32) (gpu.Tensor, []float32, error) {
	return r.featuresWith(seqs, nil)
}

// featuresWith is features with the hidden-state means already computed
// (hid, (N, C); nil: run the forward here).
func (r *Runtime) featuresWith(seqs [][]int32, hid []float32) (gpu.Tensor, []float32, error) {
	kind := r.Meta.Features
	if kind == "" || kind == FeatureEmbed {
		ft, err := cluster.Features(r.cops, r.M.W.Wte, seqs)
		if err != nil {
			return nil, nil, err
		}
		host, err := r.cops.ReadF32(ft)
		if err != nil {
			r.cops.Free(ft)
			return nil, nil, err
		}
		return ft, host, nil
	}
	host, err := r.hostFeaturesOf(kind, seqs, hid)
	if err != nil {
		return nil, nil, err
	}
	ft, err := r.cops.Alloc(gpu.F32, len(seqs), len(host)/len(seqs))
	if err != nil {
		return nil, nil, err
	}
	if err := r.cops.Write(ft, host); err != nil {
		r.cops.Free(ft)
		return nil, nil, err
	}
	return ft, host, nil
}

// hostFeaturesOf computes the sequences' features of kind (any FeatureDim
// kind, not only the adapter's) on the host, (N, FeatureDim) row-major,
// from the hidden-state means hid ((N, C); nil: run the forward here when
// kind needs them).
func (r *Runtime) hostFeaturesOf(kind string, seqs [][]int32, hid []float32) ([]float32, error) {
	embeds := func() ([]float32, error) {
		ft, err := cluster.Features(r.cops, r.M.W.Wte, seqs)
		if err != nil {
			return nil, err
		}
		defer r.cops.Free(ft)
		return r.cops.ReadF32(ft)
	}
	switch kind {
	case "", FeatureEmbed:
		return embeds()
	case FeatureHidden, FeatureBoth:
	default:
		return nil, fmt.Errorf("adapt: unknown features %q", kind)
	}
	n, c := len(seqs), r.Meta.Base.Config.NEmbd
	if hid == nil {
		var err error
		if hid, err = HiddenMeans(r.M, seqs); err != nil {
			return nil, err
		}
	}
	if kind == FeatureHidden {
		return hid, nil
	}
	emb, err := embeds()
	if err != nil {
		return nil, err
	}
	host := make([]float32, 0, 2*n*c)
	for i := range n {
		host = append(host, emb[i*c:(i+1)*c]...)
		host = append(host, hid[i*c:(i+1)*c]...)
	}
	return host, nil
}

// gateFeatures are the features the stored gate reads for seqs: feats (the
// adapter's own, (N, FeatureWidth)) unless the gate has features of its
// own (Gate.Features), computed here from the hidden-state means hid (nil:
// taken from feats when they hold them, else a forward runs).
func (r *Runtime) gateFeatures(seqs [][]int32, feats, hid []float32) ([]float32, error) {
	if r.Gate == nil || r.Gate.Features == "" {
		return feats, nil
	}
	if hid == nil {
		hid = r.hiddenOf(feats, len(seqs))
	}
	return r.hostFeaturesOf(r.Gate.Features, seqs, hid)
}

// hiddenOf is the hidden-state means inside n sequences' features of the
// adapter's kind (the whole of FeatureHidden's, the second half of each
// row of FeatureBoth's), or nil when they hold none.
func (r *Runtime) hiddenOf(feats []float32, n int) []float32 {
	c := r.Meta.Base.Config.NEmbd
	switch {
	case feats == nil:
		return nil
	case r.Meta.Features == FeatureHidden:
		return feats
	case r.Meta.Features == FeatureBoth:
		hid := make([]float32, 0, n*c)
		for i := range n {
			hid = append(hid, feats[(2*i+1)*c:(2*i+2)*c]...)
		}
		return hid
	}
	return nil
}

// GateFeatures are the sequences' features the stored gate reads, when it
// has features of its own (nil otherwise: it reads the adapter's), from
// feats, the same sequences' HostFeatures (their hidden-state means are
// reused, not recomputed): what NearestOpen takes beside them.
func (r *Runtime) GateFeatures(seqs [][]int32, feats []float32) ([]float32, error) {
	if r.Gate == nil || r.Gate.Features == "" || len(seqs) == 0 {
		return nil, nil
	}
	return r.gateFeatures(seqs, feats, nil)
}

// HiddenMeans is each sequence's mean final hidden state (the base model's
// ln_f output) over its tokens, L2-normalised, (N, C) on the host: the
// FeatureHidden feature, available after a prompt's prefill. An empty
// sequence gets a zero feature; a sequence longer than the model's context
// is an error; a non-finite hidden state is an error that names the
// sequence.
func HiddenMeans(m *model.Model, seqs [][]int32) ([]float32, error) {
	c := m.Cfg.NEmbd
	out := make([]float32, len(seqs)*c)
	var idx []int
	var toks [][]int32
	tmax := 0
	for i, s := range seqs {
		if len(s) > m.Cfg.NCtx {
			return nil, fmt.Errorf("adapt: sequence %d has %d tokens, more than the model's context of %d", i, len(s), m.Cfg.NCtx)
		}
		if len(s) > 0 {
			idx, toks = append(idx, i), append(toks, s)
			tmax = max(tmax, len(s))
		}
	}
	if len(toks) == 0 {
		return out, nil
	}
	cache, err := m.NewCache(len(toks), tmax)
	if err != nil {
		return nil, err
	}
	defer m.FreeCache(cache)
	var hs []float32
	var rows []int32
	head := model.HeadFunc(func(dst, h gpu.Tensor, seq []int32) error {
		var err error
		hs, err = m.B.ReadF32(h)
		rows = append([]int32(nil), seq...)
		return err
	})
	logits, err := m.ForwardAdapted(cache, toks, false, head)
	if err != nil {
		return nil, err
	}
	m.B.Free(logits)
	for r, slot := range rows {
		if slot < 0 {
			continue
		}
		dst := out[idx[slot]*c : (idx[slot]+1)*c]
		for j, v := range hs[r*c : (r+1)*c] {
			dst[j] += v
		}
	}
	if err := normaliseMeans(out, c, idx, func(k int) int { return len(toks[k]) }); err != nil {
		return nil, err
	}
	return out, nil
}

// normaliseMeans scales each summed hidden state out[i] (i = idx[k]) to
// unit L2 norm; a non-finite one is an error naming the sequence and its
// length n(k).
func normaliseMeans(out []float32, c int, idx []int, n func(k int) int) error {
	for k, i := range idx {
		row := out[i*c : (i+1)*c]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		if math.IsNaN(ss) || math.IsInf(ss, 0) {
			return fmt.Errorf("adapt: sequence %d has a non-finite hidden state (%d tokens)", i, n(k))
		}
		if ss > 0 {
			inv := float32(1 / math.Sqrt(ss))
			for j := range row {
				row[j] *= inv
			}
		}
	}
	return nil
}

// MeanFeatures is the hyper-network input of each of k clusters: the mean
// of its members' features (assign[i] in [0, k); others ignored), (k, c).
// An empty cluster gets a zero row.
func MeanFeatures(features []float32, assign []int, k, c int) []float32 {
	sum := make([]float64, k*c)
	cnt := make([]int, k)
	for i, a := range assign {
		if a < 0 || a >= k {
			continue
		}
		cnt[a]++
		for j := 0; j < c; j++ {
			sum[a*c+j] += float64(features[i*c+j])
		}
	}
	out := make([]float32, k*c)
	for a := 0; a < k; a++ {
		for j := 0; j < c; j++ {
			if cnt[a] > 0 {
				out[a*c+j] = float32(sum[a*c+j] / float64(cnt[a]))
			}
		}
	}
	return out
}
