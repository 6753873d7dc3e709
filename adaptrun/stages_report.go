package adaptrun

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// ReadStageChoice reads what StageChoice.WriteJSON wrote.
func ReadStageChoice(path string) (*StageChoice, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c StageChoice
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("adaptrun: %s: %w", path, err)
	}
	if c.Chosen < -1 || c.Chosen >= len(c.Rules) {
		return nil, fmt.Errorf("adaptrun: %s: chosen rule %d of %d", path, c.Chosen, len(c.Rules))
	}
	return &c, nil
}

// WritePNG draws what each rule costs against what it serves: the share
// of the one-stage check's projections it makes (x) and its served change
// on validation (y, left) and on the fit split (y, right), a line per
// stride over the margins, the one-stage check and the chosen rule marked.
func (c *StageChoice) WritePNG(path string) error {
	colors := []color.Color{color.RGBA{B: 200, A: 255}, color.RGBA{R: 200, A: 255}, color.RGBA{G: 140, A: 255},
		color.RGBA{R: 120, G: 80, B: 160, A: 255}, color.RGBA{R: 200, G: 120, A: 255}, color.RGBA{G: 120, B: 140, A: 255}}
	panel := func(title string, y func(StageRule) float64) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "predictions scored, share of one stage's"
		p.Y.Label.Text = "served change, nats/token (lower is better)"
		p.Add(plotter.NewGrid())
		strides := []int{}
		for _, r := range c.Rules {
			if len(strides) == 0 || strides[len(strides)-1] != r.Stride {
				strides = append(strides, r.Stride)
			}
		}
		for i, s := range strides {
			var xy plotter.XYs
			for _, r := range c.Rules {
				if r.Stride == s {
					xy = append(xy, plotter.XY{X: r.Validation.Cost(), Y: y(r)})
				}
			}
			l, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			l.Color, pts.Color, pts.Shape = colors[i%len(colors)], colors[i%len(colors)], draw.CircleGlyph{}
			p.Add(l, pts)
			p.Legend.Add(fmt.Sprintf("stride %d", s), l, pts)
		}
		mark := func(name string, r StageRule, g draw.GlyphDrawer) error {
			sc, err := plotter.NewScatter(plotter.XYs{{X: r.Validation.Cost(), Y: y(r)}})
			if err != nil {
				return err
			}
			sc.Shape, sc.Radius, sc.Color = g, vg.Points(6), color.Black
			p.Add(sc)
			p.Legend.Add(name, sc)
			return nil
		}
		if err := mark("one stage", c.Full, draw.BoxGlyph{}); err != nil {
			return nil, err
		}
		if c.Chosen >= 0 {
			r := c.Rules[c.Chosen]
			if err := mark(fmt.Sprintf("chosen: stride %d, margin %.2f", r.Stride, r.Margin), r, draw.CrossGlyph{}); err != nil {
				return nil, err
			}
		}
		p.Legend.Top = true
		p.X.Max = 1.45 // room right of the one-stage check (x = 1) for the legend
		return p, nil
	}
	val, err := panel("validation (adaptation domains)", func(r StageRule) float64 { return r.Validation.Change })
	if err != nil {
		return err
	}
	fit, err := panel("fit (pretraining domains)", func(r StageRule) float64 { return r.Fit.Change })
	if err != nil {
		return err
	}
	img := vgimg.New(12*vg.Inch, 5*vg.Inch)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{val, fit}}, tiles, draw.New(img))
	val.Draw(canvases[0][0])
	fit.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
