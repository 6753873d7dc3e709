package adaptrun

import (
	"math"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/adapt"
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
	r, err := MeasureOverhead(m, a, "random", nil, 4, 8, 2, 3, 0, adapt.ModeBatch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Batch != 4 || r.Seq != 8 || r.Reps != 3 || r.Adapter != "random" || r.DType != "f32" || r.Clusters != 2 {
		t.Errorf("result does not describe the run asked for: %+v", r)
	}
	if !(r.BaseSeconds > 0 && r.AdaptedSeconds > 0 && r.PlanSeconds > 0) {
		t.Errorf("times not measured: %+v", r)
	}
	if want := (r.AdaptedSeconds - r.BaseSeconds) / r.BaseSeconds; math.Abs(r.OverheadOfMedians-want) > 1e-12 {
		t.Errorf("overhead of the medians %v, want %v", r.OverheadOfMedians, want)
	}
	if _, ok := cpuSeconds(); ok && (!r.CPUTimed || r.CPUOverhead <= -1 || math.IsNaN(r.CPUOverhead)) {
		t.Errorf("CPU time not measured: overhead %v (timed %v)", r.CPUOverhead, r.CPUTimed)
	}
	if want := r.AdaptedSeconds - r.PlanSeconds - r.BaseSeconds; math.Abs(r.HeadSeconds-want) > 1e-12 {
		t.Errorf("head %v, want %v", r.HeadSeconds, want)
	}
	if r.Target != OverheadTarget || r.MeetsTarget != (r.Overhead <= OverheadTarget) {
		t.Errorf("target %v, meets %v for overhead %v", r.Target, r.MeetsTarget, r.Overhead)
	}
	if _, err := MeasureOverhead(m, a, "random", nil, 2, m.Cfg.NCtx+1, 1, 1, 0, adapt.ModeBatch); err == nil || !strings.Contains(err.Error(), "context") {
		t.Errorf("a sequence past the context: %v", err)
	}
}

// A staged self-check is timed against one stage in the same rounds, and
// projects fewer rows where its first stage keeps an update.
func TestMeasureOverheadStaged(t *testing.T) {
	m, w, a := stageFixture(t)
	staged, err := WithStages(a, adapt.CheckStages{Stride: 2, Margin: 0})
	if err != nil {
		t.Fatal(err)
	}
	var texts [][]int32
	for _, win := range w.Splits["validation"][:8] {
		texts = append(texts, win.Tokens)
	}
	r, err := MeasureOverhead(m, staged, "staged", texts, 8, 32, 2, 2, 0, adapt.ModeBatch)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Staged || !r.PlanInPrefill || !(r.FullCheckSeconds > 0) || r.FullCheckRows == 0 || r.CheckRows >= r.FullCheckRows {
		t.Fatalf("staged: %v in the prefill: %v, one stage %.3fs, rows %d staged against %d in one stage", r.Staged, r.PlanInPrefill, r.FullCheckSeconds, r.CheckRows, r.FullCheckRows)
	}
	// The one-stage overhead is paired round by round, as Overhead is
	// (TestPairedOverhead checks the pairing): here only that it was taken.
	if r.FullCheckOverhead <= -1 || math.IsNaN(r.FullCheckOverhead) || r.FullCheckOverhead == 0 {
		t.Errorf("one-stage overhead %v", r.FullCheckOverhead)
	}
	r, err = MeasureOverhead(m, a, "one stage", texts, 8, 32, 2, 1, 0, adapt.ModeBatch)
	if err != nil || r.Staged || r.FullCheckRows != 0 {
		t.Fatalf("an adapter in one stage: staged %v, %d rows in a second timing (%v)", r.Staged, r.FullCheckRows, err)
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

// TestPairedOverhead: the median of the rounds' own ratios, not the ratio
// of the medians: a machine that slows down between rounds shifts both
// times of a round alike.
func TestPairedOverhead(t *testing.T) {
	base, adapted := []float64{1, 2, 4}, []float64{1.1, 2.1, 4.8} // ratios +10%, +5%, +20%
	got, rounds := pairedOverhead(base, adapted)
	if math.Abs(got-0.1) > 1e-12 || len(rounds) != 3 || math.Abs(rounds[2]-0.2) > 1e-12 {
		t.Errorf("paired overhead %v over rounds %v, want 0.1 (the ratio of the medians is 0.05) over [0.1 0.05 0.2]", got, rounds)
	}
}

// TestMedianInterval: the interval holds the median, lies within the
// sample, collapses for a constant sample and is the same for the same
// seed.
func TestMedianInterval(t *testing.T) {
	xs := []float64{0.03, 0.05, 0.04, 0.2, 0.035, 0.045, 0.5}
	iv := MedianInterval(xs, 2000, 7)
	if iv.Mean != 0.045 || iv.Lo > iv.Mean || iv.Hi < iv.Mean || iv.Lo < 0.03 || iv.Hi > 0.5 {
		t.Errorf("interval %+v for %v", iv, xs)
	}
	if iv.Hi >= 0.5 {
		t.Errorf("one outlier of seven moved the median's interval to it: %+v", iv)
	}
	if again := MedianInterval(xs, 2000, 7); again != iv {
		t.Errorf("same seed, %+v then %+v", iv, again)
	}
	if c := MedianInterval([]float64{0.1, 0.1, 0.1}, 100, 1); c.Lo != 0.1 || c.Hi != 0.1 {
		t.Errorf("a constant sample: %+v", c)
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{3, 1, 2}
	if median(xs) != 2 || median([]float64{4, 1, 3, 2}) != 2.5 || xs[0] != 3 {
		t.Error("median: want the middle (mean of the two middle ones), input untouched")
	}
}

// Online plans (the server's grouping) are timed too, and there a selection
// among several candidates (Meta.Select) scores more rows than the one
// nearest centroid's check; an unknown grouping is refused.
func TestMeasureOverheadOnline(t *testing.T) {
	m, w, a := stageFixture(t)
	var texts [][]int32
	for _, win := range w.Splits["validation"][:8] {
		texts = append(texts, win.Tokens)
	}
	one, err := MeasureOverhead(m, a, "nearest", texts, 8, 32, 0, 1, 0, adapt.ModeOnline)
	if err != nil {
		t.Fatal(err)
	}
	sel := *a
	sel.Meta.Select = 3
	three, err := MeasureOverhead(m, &sel, "select 3", texts, 8, 32, 0, 1, 0, adapt.ModeOnline)
	if err != nil {
		t.Fatal(err)
	}
	if one.Mode != "online" || three.Mode != "online" || one.Clusters != a.Meta.Centroids || one.CheckRows == 0 || three.CheckRows <= one.CheckRows {
		t.Fatalf("online: modes %q %q, %d clusters (centroids %d), check rows %d nearest against %d with a selection of 3",
			one.Mode, three.Mode, one.Clusters, a.Meta.Centroids, one.CheckRows, three.CheckRows)
	}
	if _, err := MeasureOverhead(m, a, "x", texts, 8, 32, 0, 1, 0, adapt.ModeOne); err == nil || !strings.Contains(err.Error(), "batch or online") {
		t.Errorf("adapt mode one: %v", err)
	}
}
