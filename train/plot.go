package train

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteLossPlot draws the loss curve of hist as a PNG at path: the training
// loss of every step (light) and its exponential moving average, the
// validation loss over all domains, and each domain's validation loss. The
// file is written under a temporary name and renamed into place.
func WriteLossPlot(path string, hist History) error {
	p := plot.New()
	p.Title.Text = "training loss"
	p.X.Label.Text = "step"
	p.Y.Label.Text = "cross-entropy (nats/token)"
	p.Add(plotter.NewGrid())
	if n := len(hist.Train); n > 0 {
		raw, ema := make(plotter.XYs, n), make(plotter.XYs, n)
		avg := hist.Train[0].Loss
		alpha := 2 / (1 + min(50, float64(n)/10+1)) // smooth over ~n/10 steps, at most 50
		for i, pt := range hist.Train {
			avg += alpha * (pt.Loss - avg)
			raw[i] = plotter.XY{X: float64(pt.Step), Y: pt.Loss}
			ema[i] = plotter.XY{X: float64(pt.Step), Y: avg}
		}
		if err := addLine(p, raw, "train", color.RGBA{R: 160, G: 160, B: 220, A: 255}, 0.5); err != nil {
			return err
		}
		if err := addLine(p, ema, "train (EMA)", color.RGBA{B: 200, A: 255}, 1.5); err != nil {
			return err
		}
	}
	if len(hist.Val) > 0 {
		all := make(plotter.XYs, len(hist.Val))
		byDom := map[string]plotter.XYs{}
		for i, e := range hist.Val {
			all[i] = plotter.XY{X: float64(e.Step), Y: e.Loss}
			for d, l := range e.ByDomain {
				byDom[d] = append(byDom[d], plotter.XY{X: float64(e.Step), Y: l})
			}
		}
		if err := addLine(p, all, "validation", color.Black, 2); err != nil {
			return err
		}
		var ds []string
		for d := range byDom {
			ds = append(ds, d)
		}
		sort.Strings(ds)
		for i, d := range ds {
			if err := addLine(p, byDom[d], "val "+d, plotutil.Color(i+1), 1); err != nil {
				return err
			}
		}
	}
	p.Legend.Top = true
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := p.Save(8*vg.Inch, 5*vg.Inch, tmp); err != nil {
		return fmt.Errorf("train: loss plot: %w", err)
	}
	return os.Rename(tmp, path)
}

func addLine(p *plot.Plot, xys plotter.XYs, name string, c color.Color, width float64) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("train: loss plot: %s: %w", name, err)
	}
	l.Color = c
	l.Width = vg.Points(width)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}
