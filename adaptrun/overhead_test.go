package adaptrun

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

// The overhead measurement on the reference backend: its fields agree with
// one another and with what was asked; a sequence longer than the context
// is refused.
func TestMeasureOverhead(t *testing.T) {
	m, _ := fixture(t)
	host := model.RandomInit(m.Cfg, 3) // the fixture's weights
	a, err := RandomHyper(m.Cfg, host, 2, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := MeasureOverhead(m, a, "random", nil, 4, 8, 2, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Batch != 4 || r.Seq != 8 || r.Reps != 3 || r.Adapter != "random" || r.DType != "f32" || r.Clusters != 2 {
		t.Errorf("result does not describe the run asked for: %+v", r)
	}
	if !(r.BaseSeconds > 0 && r.AdaptedSeconds > 0 && r.PlanSeconds > 0) {
		t.Errorf("times not measured: %+v", r)
	}
	if want := (r.AdaptedSeconds - r.BaseSeconds) / r.BaseSeconds; math.Abs(r.Overhead-want) > 1e-12 {
		t.Errorf("overhead %v, want %v", r.Overhead, want)
	}
	if want := r.AdaptedSeconds - r.PlanSeconds - r.BaseSeconds; math.Abs(r.HeadSeconds-want) > 1e-12 {
		t.Errorf("head %v, want %v", r.HeadSeconds, want)
	}
	if r.Target != OverheadTarget || r.MeetsTarget != (r.Overhead <= OverheadTarget) {
		t.Errorf("target %v, meets %v for overhead %v", r.Target, r.MeetsTarget, r.Overhead)
	}
	if _, err := MeasureOverhead(m, a, "random", nil, 2, m.Cfg.NCtx+1, 1, 1, 0); err == nil || !strings.Contains(err.Error(), "context") {
		t.Errorf("a sequence past the context: %v", err)
	}
}

// A random hyper-network with block sites carries their tensors too.
func TestRandomHyperSites(t *testing.T) {
	m, _ := fixture(t)
	host := model.RandomInit(m.Cfg, 3)
	head, err := RandomHyper(m.Cfg, host, 2, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	deep, err := RandomHyper(m.Cfg, host, 2, model.SiteQKV+","+model.SiteFC2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(deep.Meta.Sites) != 2 || len(deep.Tensors) <= len(head.Tensors) {
		t.Errorf("sites %v: %d tensors, the head-only one %d", deep.Meta.Sites, len(deep.Tensors), len(head.Tensors))
	}
	if _, err := RandomHyper(m.Cfg, host, 2, "nowhere", 1); err == nil {
		t.Error("an unknown site was accepted")
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{3, 1, 2}
	if median(xs) != 2 || median([]float64{4, 1, 3, 2}) != 2.5 || xs[0] != 3 {
		t.Error("median: want the middle (mean of the two middle ones), input untouched")
	}
}
