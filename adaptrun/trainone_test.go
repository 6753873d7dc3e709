package adaptrun

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/train"
)

// TrainOne trains head and decoder methods alike; a hyper adapter comes
// out gated and self-checking, the gate's pretraining picture from fit; a
// LoRA comes out as trained.
func TestTrainOne(t *testing.T) {
	m, _, sets, base := prepared(t)
	tb := m.B.(gpu.TrainBackend)
	o := TrainOpts{Batch: 4, Epochs: 2, LR: 1e-2, Seed: 3, Alpha: 1}
	for _, tc := range []struct {
		meth  Method
		gated bool
	}{
		{Method{Name: "hyper", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}}, true},
		{Method{Name: "deep", Kind: KindHyper, Rank: 2, Features: adapt.FeatureBoth, Hidden: []int{6}, Deep: []string{train.SiteQKV}}, true},
		{Method{Name: "lora", Kind: KindLoRA, Rank: 2}, false},
		{Method{Name: "lora-gated", Kind: KindLoRA, Rank: 2, Features: adapt.FeatureBoth}, true},
	} {
		steps := 0
		tr, err := TrainOne(tb, m, base, tc.meth, sets.Train, sets.Fit, o, func(step, _ int, _ float64) { steps = step })
		if err != nil {
			t.Fatalf("%s: %v", tc.meth.Name, err)
		}
		meta := tr.Adapter.Meta
		if len(tr.Losses) == 0 || steps != len(tr.Losses) {
			t.Errorf("%s: %d losses, progress reached step %d", tc.meth.Name, len(tr.Losses), steps)
		}
		if tc.gated != (meta.SelfCheck && meta.GateRadius > 0 && meta.GatePretrain > 0) {
			t.Errorf("%s: self-check %v, gate radius %v, pretraining centroids %v; want gated %v",
				tc.meth.Name, meta.SelfCheck, meta.GateRadius, meta.GatePretrain, tc.gated)
		}
		if err := tr.Adapter.Validate(); err != nil {
			t.Errorf("%s: %v", tc.meth.Name, err)
		}
		// Gating again (as adapt bench does for the files it saves)
		// keeps one centroids tensor and the same gate.
		n := len(tr.Adapter.Tensors)
		ok, err := GateAndSelfCheck(tr, sets.Train, sets.Fit, o.Batch)
		if err != nil || ok != tc.gated || len(tr.Adapter.Tensors) != n || tr.Adapter.Meta.GateRadius != meta.GateRadius {
			t.Errorf("%s: gated again: %v %v, %d tensors (was %d), radius %v (was %v)", tc.meth.Name, ok, err,
				len(tr.Adapter.Tensors), n, tr.Adapter.Meta.GateRadius, meta.GateRadius)
		}
		if tc.gated && tr.Adapter.TrainingCentroids() == nil {
			t.Errorf("%s: no training centroids in the file", tc.meth.Name)
		}
	}
}

// TestMatchedRank: the parameter-matched LoRA that `adapt train` and
// `adapt bench` both build has the head-only hyper-network's parameters at
// the default shape (C=256, V=4096, r=8: rank 272), not the rank flag's.
func TestMatchedRank(t *testing.T) {
	m := MatchedMethods(8, adapt.FeatureBoth, 6, 256, 4096, 0)
	lm, hb := m["lora-matched"], m["hyper-both"]
	if lm.Rank != 272 {
		t.Fatalf("matched rank %d, want 272", lm.Rank)
	}
	lp, hp := lm.Params(256, 4096, 1), hb.Params(256, 4096, 1)
	if d := math.Abs(float64(lp-hp)) / float64(hp); d > float64(256+4096)/2/float64(hp) {
		t.Fatalf("LoRA %d parameters against the hyper-network's %d", lp, hp)
	}
	if m["lora"].Rank != 8 {
		t.Fatalf("plain LoRA rank %d", m["lora"].Rank)
	}
	// A budget of 68 ranks: the LoRA takes it whole, the basis's pair 60
	// ranks and its gate network the rest, never more than the LoRA.
	m = MatchedMethods(8, adapt.FeatureBoth, 6, 256, 4096, 68)
	lm, bm := m["lora-matched"], m["hyper-basis"]
	if lm.Rank != 68 || bm.Rank != 60 {
		t.Fatalf("budget 68: LoRA rank %d, basis rank %d; want 68 and 60", lm.Rank, bm.Rank)
	}
	if lp, bp := lm.Params(256, 4096, 1), bm.Params(256, 4096, 1); bp > lp {
		t.Fatalf("budget 68: basis %d parameters, more than the LoRA's %d", bp, lp)
	}
	// hyper-basis-fit: the largest pair whose basis stays within the
	// LoRA's parameters (63 ranks and the same gate network: 292,735
	// against 295,936).
	fit := m["hyper-basis-fit"]
	lp, fp := lm.Params(256, 4096, 1), fit.Params(256, 4096, 1)
	one := fit
	one.Rank++
	if fit.Rank != 63 || fp > lp || one.Params(256, 4096, 1) <= lp || !fit.Basis || fit.Hidden[0] != bm.Hidden[0] {
		t.Fatalf("budget 68: fitted basis rank %d with %d parameters (one rank more: %d) against the LoRA's %d", fit.Rank, fp, one.Params(256, 4096, 1), lp)
	}
}

// TestWithGateDrop: hyper-basis-drop is the fitted basis with gate
// dropout 0.5, and WithGateDrop changes the rate and the name together.
func TestWithGateDrop(t *testing.T) {
	ms := MatchedMethods(8, adapt.FeatureHidden, 6, 256, 4096, 68)
	fit, drop := ms["hyper-basis-fit"], ms["hyper-basis-drop"]
	if drop.GateDrop != 0.5 || fit.GateDrop != 0 || drop.Rank != fit.Rank || drop.Params(256, 4096, 1) != fit.Params(256, 4096, 1) {
		t.Fatalf("hyper-basis-drop: gate dropout %g, rank %d; want 0.5 on hyper-basis-fit's rank %d", drop.GateDrop, drop.Rank, fit.Rank)
	}
	m := drop.WithGateDrop(0.2)
	if m.GateDrop != 0.2 || !strings.Contains(m.Name, "gate dropout 0.2") || m.Name == drop.Name {
		t.Errorf("WithGateDrop(0.2): %g, %q", m.GateDrop, m.Name)
	}
}
