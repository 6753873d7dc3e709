package adaptrun

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Markdown writes the cache's tables: per stream every row against the
// base model, and the mixed stream's rows per domain.
func (r *CacheResult) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Prior weight beta = %g pseudo-counts, chosen on validation (nats/token against base there:", r.Beta)
	for _, b := range slices.Sorted(maps.Keys(r.BetaVal)) {
		fmt.Fprintf(w, " beta %s %+.4f;", b, r.BetaVal[b])
	}
	fmt.Fprintln(w, ")")
	for _, st := range r.Streams {
		fmt.Fprintf(w, "\n**%s** (%d windows, base perplexity %.2f)\n\n", st.Name, st.Windows, st.BasePPL)
		fmt.Fprintln(w, "| row | nats/token vs base [95%] | perplexity | adaptation | pretraining | held-out | mean weights own / pool | neural own / pool, theta (mean where used) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		for _, x := range st.Rows {
			mw := x.MeanWeights
			fmt.Fprintf(w, "| %s | %+.4f [%+.4f, %+.4f] | %.2f | %s | %s | %s | %.3f / %.3f | %.3f / %.3f, %.1f |\n", x.Name, x.Diff.Mean, x.Diff.Lo,
				x.Diff.Hi, x.PPL, roleCell(x, RoleAdapt), roleCell(x, RolePretrain), roleCell(x, RoleHeldOut), mw.Own, mw.Pool, mw.NeuralOwn,
				mw.NeuralPool, mw.Theta)
		}
		fmt.Fprintln(w)
		for _, pr := range st.Pairs {
			fmt.Fprintf(w, "- %s minus %s: %+.4f [%+.4f, %+.4f] nats/token\n", pr.A, pr.B, pr.Diff.Mean, pr.Diff.Lo, pr.Diff.Hi)
		}
	}
	if len(r.Streams) == 0 {
		return
	}
	st := r.Streams[len(r.Streams)-1]
	if n := len(r.SeedMeans[st.Rows[0].Name]); n > 1 {
		fmt.Fprintf(w, "\nUnder other k-means and random-batch seeds, %s (nats/token against the base model; seed 1 is the table above):\n\n| row |", st.Name)
		for i := range n {
			fmt.Fprintf(w, " seed %d |", i+1)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", n))
		for _, x := range st.Rows {
			fmt.Fprintf(w, "| %s |", x.Name)
			for _, v := range r.SeedMeans[x.Name] {
				fmt.Fprintf(w, " %+.4f |", v)
			}
			fmt.Fprintln(w)
		}
	}
	var doms []string
	for _, d := range r.Order {
		if _, ok := st.Rows[0].PerDomain[d]; ok {
			doms = append(doms, d)
		}
	}
	fmt.Fprintf(w, "\nPer domain, %s (nats/token against the base model):\n\n| row | %s |\n|---|%s\n", st.Name, strings.Join(doms, " | "), strings.Repeat("---|", len(doms)))
	for _, x := range st.Rows {
		fmt.Fprintf(w, "| %s |", x.Name)
		for _, d := range doms {
			fmt.Fprintf(w, " %+.3f |", x.PerDomain[d])
		}
		fmt.Fprintln(w)
	}
	r.markdownVersus(w)
}

func roleCell(x CacheRow, role string) string {
	v, ok := x.PerRole[role]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%+.3f", v)
}

// WriteJSON writes the result as gzipped JSON.
func (r *CacheResult) WriteJSON(path string) error {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	if err := json.NewEncoder(z).Encode(r); err != nil {
		return err
	}
	if err := z.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// WritePNG draws each stream's rows against the base model with their
// intervals, one group of bars per stream.
func (r *CacheResult) WritePNG(path string) error {
	p := plot.New()
	p.Title.Text = "token cache: loss change vs the base model (95% paired bootstrap)"
	p.Y.Label.Text = "change in nats/token (lower is better)"
	p.Add(plotter.NewGrid())
	palette := []color.Color{color.RGBA{R: 90, G: 90, B: 90, A: 255}, color.RGBA{R: 200, G: 120, A: 255}, color.RGBA{B: 200, A: 255},
		color.RGBA{R: 200, A: 255}, color.RGBA{R: 140, G: 60, B: 140, A: 255}, color.RGBA{G: 140, A: 255},
		color.RGBA{R: 90, G: 170, B: 200, A: 255}}
	var names []string
	for si, st := range r.Streams {
		names = append(names, st.Name)
		for ri, x := range st.Rows {
			xpos := float64(si) + (float64(ri)-float64(len(st.Rows)-1)/2)*0.1
			pts := plotter.XYs{{X: xpos, Y: x.Diff.Mean}}
			s, err := plotter.NewScatter(pts)
			if err != nil {
				return err
			}
			col := palette[ri%len(palette)]
			s.Color = col
			s.Radius = vg.Points(3)
			eb, err := plotter.NewYErrorBars(struct {
				plotter.XYer
				plotter.YErrorer
			}{pts, plotter.YErrors{{Low: x.Diff.Mean - x.Diff.Lo, High: x.Diff.Hi - x.Diff.Mean}}})
			if err != nil {
				return err
			}
			eb.Color = col
			p.Add(s, eb)
			if si == 0 {
				p.Legend.Add(x.Name, s)
			}
		}
	}
	p.NominalX(names...)
	// The legend sits above the data: room for it on top of the highest
	// interval.
	hi := 0.0
	for _, st := range r.Streams {
		for _, x := range st.Rows {
			hi = max(hi, x.Diff.Hi)
		}
	}
	p.Y.Max = hi + 0.06*float64(len(cacheVariants))*(hi-p.Y.Min+0.01)/1.5
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(9*vg.Inch, 6*vg.Inch, path)
}
