package adaptrun

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// OverheadTarget is ChamaleonLLM's bound on the adaptation's cost: at most
// 5% more time than the plain forward.
const OverheadTarget = 0.05

// Overhead compares a forward pass with and without the whole adaptation
// (`chameleon bench --adapter`).
type Overhead struct {
	DType    string `json:"dtype"`
	Batch    int    `json:"batch"`
	Seq      int    `json:"seq"`
	Clusters int    `json:"clusters"`
	Mode     string `json:"adapt_mode"` // how the plan grouped the batch: batch (k-means, generate's default) or online (nearest training centroid, the server's)
	Adapted  int    `json:"adapted"`    // sequences the plan adapted (the gate and self-check keep the others at the base model)
	Inputs   string `json:"inputs"`     // "random tokens" or "texts"
	// CheckTokens is the runtime's Runtime.CheckTokens (0: the default).
	CheckTokens int    `json:"check_tokens"`
	Adapter     string `json:"adapter"`
	Reps        int    `json:"reps"`
	// Medians over the repetitions, seconds. Base: the batched prefill
	// with the tied projection (last-position logits, greedy pick read
	// back, as generation runs it). Adapted: the same pass with the plan
	// (features, k-means, the hyper-network on each cluster's mean, the
	// gate and self-check) and the fused low-rank head, as generate runs
	// it (adapt.Runtime.Prefill: inside the prefill where the adapter
	// allows, PlanInPrefill). Apart: Runtime.Plan first, with the base
	// pass of its own that hidden-state features and the self-check need,
	// then the adapted prefill (how generate ran it until 2026-12-05).
	BaseSeconds    float64 `json:"base_seconds"`
	AdaptedSeconds float64 `json:"adapted_seconds"`
	PlanSeconds    float64 `json:"plan_seconds"` // features + k-means + hyper-network (+ the self-check's scoring)
	HeadSeconds    float64 `json:"head_seconds"` // adapted forward - base forward - plan (the low-rank apply)
	// Overhead is the median over the rounds of adapted / base - 1, each
	// round's pair timed back to back, so that drift in the machine's
	// speed between rounds cancels (until 2026-12-06: the ratio of the
	// medians, OverheadOfMedians).
	Overhead          float64 `json:"overhead"`
	OverheadOfMedians float64 `json:"overhead_of_medians"` // AdaptedSeconds / BaseSeconds - 1
	// CPUOverhead is Overhead by the process's CPU time instead of the
	// wall clock (CPUTimed: where it can be read): on a CPU adapter such
	// as lavapipe, whose workers are the process's threads, it does not
	// count time the machine gave to others; on a GPU it means nothing.
	CPUOverhead float64 `json:"cpu_overhead"`
	CPUTimed    bool    `json:"cpu_timed"`
	// RoundOverheads and RoundCPUOverheads are each round's ratio, in
	// order, so that a reader sees the spread behind the medians.
	RoundOverheads    []float64 `json:"round_overheads"`
	RoundCPUOverheads []float64 `json:"round_cpu_overheads,omitempty"`
	// OverheadCI and CPUOverheadCI are 95% bootstrap intervals of the two
	// medians over the rounds (MedianInterval; Mean is the median).
	OverheadCI    Interval `json:"overhead_ci"`
	CPUOverheadCI Interval `json:"cpu_overhead_ci"`
	// PlanReadBytes and PlanWrittenBytes are what the adapted pass read
	// back from the device and wrote to it beyond the plain pass (gpu.Counts;
	// zero on a backend that does not count): the plan's host round trips,
	// which on a discrete GPU cross the bus.
	PlanReadBytes    int64   `json:"plan_read_bytes"`
	PlanWrittenBytes int64   `json:"plan_written_bytes"`
	PlanInPrefill    bool    `json:"plan_in_prefill"`
	ApartSeconds     float64 `json:"apart_seconds"`
	ApartOverhead    float64 `json:"apart_overhead"` // (apart - base) / base
	Target           float64 `json:"target"`         // OverheadTarget
	MeetsTarget      bool    `json:"meets_target"`
	// A staged self-check (adapt.CheckStages in the file): the adapted
	// prefill again in the same rounds with the check in one stage
	// (Runtime.FullCheck; its overhead paired round by round as Overhead
	// is), and the rows each projected per pass.
	Staged            bool    `json:"staged,omitempty"`
	FullCheckSeconds  float64 `json:"full_check_seconds,omitempty"`
	FullCheckOverhead float64 `json:"full_check_overhead,omitempty"`
	CheckRows         int     `json:"check_rows"`
	FullCheckRows     int     `json:"full_check_rows,omitempty"`
}

// RandomHyper is a hyper-network adapter of rank for the model cfg/host
// with PyTorch's default initialisation (a non-zero update), generating
// updates of the block sites too (comma-separated, "": none): for timing,
// where the weights' values do not matter.
func RandomHyper(cfg model.Config, host []model.HostTensor, rank int, sites string, seed uint64) (*adapt.Adapter, error) {
	base, err := adapt.BaseOf(cfg, host)
	if err != nil {
		return nil, err
	}
	hc := adapt.DefaultHyper(cfg.NEmbd, cfg.VocabSize, rank)
	meta := adapt.Meta{Kind: adapt.KindHyper, Rank: rank, Alpha: hc.Alpha, Hidden: hc.Hidden, Dropout: hc.Dropout, Base: base}
	if sites != "" {
		meta.Sites = strings.Split(sites, ",")
	}
	a := &adapt.Adapter{Meta: meta, Tensors: adapt.InitHyper(hc, seed)}
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, t := range meta.Spec()[len(a.Tensors):] {
		t.Data = make([]float32, gpu.Numel(t.Shape))
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64() * 0.02)
		}
		a.Tensors = append(a.Tensors, t)
	}
	return a, a.Validate()
}

// MeasureOverhead times reps passes of batch sequences of seq tokens with
// and without the adaptation a (named spec in the result; k clusters a
// batch, 0: the runtime's default), alternating them so that drift in the
// machine's load hits both alike. A first, untimed pair warms the
// pipelines up. The sequences are the first seq tokens of texts (nil:
// random tokens, which a gated adapter keeps at the base model, skipping
// its self-check: real text from its domains is its working case).
// checkTokens sets the runtime's Runtime.CheckTokens. mode is the plan's
// grouping: adapt.ModeBatch (k-means, as generate runs by default) or
// adapt.ModeOnline (each sequence's nearest training centroid, as the
// server does, where a selection among candidates, Meta.Select, applies).
func MeasureOverhead(m *model.Model, a *adapt.Adapter, spec string, texts [][]int32, batch, seq, k, reps, checkTokens int, mode adapt.Mode) (Overhead, error) {
	r := Overhead{DType: m.W.Wte.DType().String(), Batch: batch, Seq: seq, Adapter: spec, Reps: reps, Target: OverheadTarget, Inputs: "random tokens", Mode: string(mode)}
	if mode != adapt.ModeBatch && mode != adapt.ModeOnline {
		return r, fmt.Errorf("adaptrun: overhead in adapt mode %q: want batch or online", mode)
	}
	if seq <= 0 || seq > m.Cfg.NCtx {
		return r, fmt.Errorf("--seq %d: want 1 to the model's context of %d", seq, m.Cfg.NCtx)
	}
	if batch <= 0 || reps <= 0 {
		return r, fmt.Errorf("adaptrun: overhead of batch %d over %d repetitions: want both positive", batch, reps)
	}
	rt, err := adapt.NewRuntime(m, a)
	if err != nil {
		return r, err
	}
	defer rt.Free()
	rt.CheckTokens = checkTokens
	r.CheckTokens = checkTokens
	toks, err := overheadInputs(texts, batch, seq, m.Cfg.VocabSize)
	if err != nil {
		return r, err
	}
	if texts != nil {
		r.Inputs = "texts"
	}
	pass, done, err := greedyPass(m, toks)
	if err != nil {
		return r, err
	}
	defer done()
	r.Staged = a.Meta.CheckStride > 0 && !rt.FullCheck
	var base, adapted, plans, apart, full, cpuBase, cpuAdapted []float64
	_, r.CPUTimed = cpuSeconds()
	for i := -1; i < reps; i++ { // i = -1 warms the pipelines up
		c0, _ := cpuSeconds()
		k0 := countsOf(m.B)
		t0 := time.Now()
		if err := pass(nil); err != nil {
			return r, err
		}
		tb := time.Since(t0).Seconds()
		kb := countsOf(m.B).Sub(k0)
		cb, _ := cpuSeconds()
		cb -= c0
		o := adapt.PlanOptions{Mode: mode, K: k, Seed: uint64(i + 2)}
		rows := rt.CheckedRows()
		ad, err := timeAdapted(rt, pass, toks, o, &r)
		if err != nil {
			return r, err
		}
		ta, tp, tapart, ca := ad.wall, ad.plan, ad.apart, ad.cpu
		r.CheckRows = rt.CheckedRows() - rows
		r.PlanReadBytes = int64(ad.moved.ReadBytes) - int64(kb.ReadBytes)
		r.PlanWrittenBytes = int64(ad.moved.WrittenBytes) - int64(kb.WrittenBytes)
		if r.Staged {
			tf, rows, err := timeFullCheck(rt, pass, toks, o)
			if err != nil {
				return r, err
			}
			full, r.FullCheckRows = append(full, tf), rows
		}
		if i >= 0 {
			base, adapted, plans, apart = append(base, tb), append(adapted, ta), append(plans, tp), append(apart, tapart)
			cpuBase, cpuAdapted = append(cpuBase, cb), append(cpuAdapted, ca)
		} else if r.Staged {
			full = full[:0]
		}
	}
	r.BaseSeconds, r.AdaptedSeconds, r.PlanSeconds, r.ApartSeconds = median(base), median(adapted), median(plans), median(apart)
	if r.Staged {
		r.FullCheckSeconds = median(full)
		r.FullCheckOverhead, _ = pairedOverhead(base, full)
	}
	r.summarise(base, adapted, cpuBase, cpuAdapted)
	return r, nil
}

// summarise fills r's overheads from the medians already in it and the
// rounds' wall-clock and CPU times.
func (r *Overhead) summarise(base, adapted, cpuBase, cpuAdapted []float64) {
	r.HeadSeconds = r.AdaptedSeconds - r.PlanSeconds - r.BaseSeconds
	r.Overhead, r.RoundOverheads = pairedOverhead(base, adapted)
	r.OverheadCI = MedianInterval(r.RoundOverheads, 10000, 1)
	r.OverheadOfMedians = (r.AdaptedSeconds - r.BaseSeconds) / r.BaseSeconds
	if r.CPUTimed = r.CPUTimed && !slices.Contains(cpuBase, 0); r.CPUTimed {
		r.CPUOverhead, r.RoundCPUOverheads = pairedOverhead(cpuBase, cpuAdapted)
		r.CPUOverheadCI = MedianInterval(r.RoundCPUOverheads, 10000, 1)
	}
	r.ApartOverhead = (r.ApartSeconds - r.BaseSeconds) / r.BaseSeconds
	r.MeetsTarget = r.Overhead <= r.Target
}

// overheadInputs are batch sequences of seq tokens: the first seq of each
// of texts, or, for nil texts, random ids below vocab.
func overheadInputs(texts [][]int32, batch, seq, vocab int) ([][]int32, error) {
	rng := rand.New(rand.NewPCG(uint64(batch), uint64(seq)))
	toks := make([][]int32, batch)
	if texts != nil && len(texts) < batch {
		return nil, fmt.Errorf("adaptrun: %d texts for a batch of %d", len(texts), batch)
	}
	for i := range toks {
		if texts != nil {
			if len(texts[i]) < seq {
				return nil, fmt.Errorf("adaptrun: text %d has %d tokens, fewer than --seq %d", i, len(texts[i]), seq)
			}
			toks[i] = texts[i][:seq]
			continue
		}
		toks[i] = make([]int32, seq)
		for j := range toks[i] {
			toks[i][j] = int32(rng.IntN(vocab))
		}
	}
	return toks, nil
}

// adaptedRound is one round's adapted pass, timeAdapted's result: the
// plan made inside the prefill took wall seconds (plan of them in the
// plan, cpu of process CPU time) and moved what moved records; the plan
// apart took apart seconds.
type adaptedRound struct {
	wall, plan, cpu, apart float64
	moved                  gpu.Counts
}

// countsOf is b's gpu.Counts where it counts (zero otherwise).
func countsOf(b gpu.Backend) gpu.Counts {
	if c, ok := b.(gpu.Counter); ok {
		return c.Counts()
	}
	return gpu.Counts{}
}

// timeAdapted times pass adapted by a plan of toks under o both ways: the
// plan made inside the prefill (Runtime.Prefill, as generate runs it) and
// the plan apart (Runtime.Plan's own base pass, then the prefill). It
// records the plan's clusters, the sequences it adapted and whether the
// prefill made it in r.
func timeAdapted(rt *adapt.Runtime, pass func(model.Adapter) error, toks [][]int32, o adapt.PlanOptions, r *Overhead) (adaptedRound, error) {
	var ad adaptedRound
	c0, _ := cpuSeconds()
	k0 := countsOf(rt.M.B)
	t0 := time.Now()
	pf, err := rt.Prefill(toks, o)
	if err != nil {
		return ad, err
	}
	err = pass(pf)
	ad.wall = time.Since(t0).Seconds()
	ad.moved = countsOf(rt.M.B).Sub(k0)
	ad.cpu, _ = cpuSeconds()
	ad.cpu -= c0
	ad.plan = pf.PlanTime.Seconds()
	r.PlanInPrefill = pf.FromPrefill
	if plan := pf.Plan(); plan != nil {
		r.Clusters, r.Adapted = plan.K, 0
		for _, c := range plan.Cluster {
			if c >= 0 {
				r.Adapted++
			}
		}
	}
	pf.Free()
	if err != nil {
		return ad, err
	}
	t0 = time.Now()
	plan, err := rt.Plan(toks, o)
	if err != nil {
		return ad, err
	}
	err = pass(plan.Adapter(nil))
	ad.apart = time.Since(t0).Seconds()
	plan.Free()
	return ad, err
}

// timeFullCheck times pass adapted by a prefill's plan of toks with the
// self-check in one stage (Runtime.FullCheck), and counts the rows it
// projected.
func timeFullCheck(rt *adapt.Runtime, pass func(model.Adapter) error, toks [][]int32, o adapt.PlanOptions) (float64, int, error) {
	rt.FullCheck = true
	defer func() { rt.FullCheck = false }()
	rows := rt.CheckedRows()
	t0 := time.Now()
	pf, err := rt.Prefill(toks, o)
	if err != nil {
		return 0, 0, err
	}
	err = pass(pf)
	pf.Free()
	return time.Since(t0).Seconds(), rt.CheckedRows() - rows, err
}

// greedyPass returns a function that runs toks as one batched prefill from
// an empty cache (adapted by ad, nil: the base model) with the greedy pick
// of each sequence's last position read back, as generation's first step
// does, and the function that frees what it holds.
func greedyPass(m *model.Model, toks [][]int32) (pass func(ad model.Adapter) error, done func(), err error) {
	seq := 0
	for _, t := range toks {
		seq = max(seq, len(t))
	}
	cache, err := m.NewCache(len(toks), seq)
	if err != nil {
		return nil, nil, err
	}
	ids, err := m.B.Alloc(gpu.I32, len(toks))
	if err != nil {
		m.FreeCache(cache)
		return nil, nil, err
	}
	pass = func(ad model.Adapter) error {
		for i := range cache.Len {
			cache.Len[i] = 0
		}
		lg, err := m.ForwardAdapted(cache, toks, true, ad)
		if err != nil {
			return err
		}
		m.B.Argmax(ids, lg)
		_, err = m.B.ReadI32(ids)
		m.B.Free(lg)
		return err
	}
	return pass, func() { m.B.Free(ids); m.FreeCache(cache) }, nil
}

// pairedOverhead is the median over rounds i of adapted[i] / base[i] - 1,
// and those ratios.
func pairedOverhead(base, adapted []float64) (float64, []float64) {
	rs := make([]float64, len(base))
	for i, b := range base {
		rs[i] = adapted[i]/b - 1
	}
	return median(rs), rs
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); xs is not modified.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
