package adaptrun

import (
	"fmt"
	"strings"
)

// writeGrid writes the learning rates' table: each method's validation
// loss at every rate (a line per epochs, cluster size and gate decay when
// they are part of the grid) and its choice.
func (r *Result) writeGrid(b *strings.Builder) {
	b.WriteString("\nLearning rates (validation loss, first seed, the method's own grouping):\n\n| method | ")
	byEpochs, byClusters, byDecay := len(r.EpochGrid) > 1, len(r.ClusterGrid) > 1, len(r.DecayGrid) > 1
	cols := len(r.LRs) + 2 // method, rates, chosen
	for _, c := range []struct {
		on   bool
		head string
	}{{byEpochs, "epochs"}, {byClusters, "cluster size"}, {byDecay, "gate decay"}} {
		if c.on {
			b.WriteString(c.head + " | ")
			cols++
		}
	}
	for _, lr := range r.LRs {
		fmt.Fprintf(b, "%g | ", lr)
	}
	b.WriteString("chosen |\n|" + strings.Repeat("---|", cols) + "\n")
	eps := r.EpochGrid
	if !byEpochs {
		eps = []int{r.Opts.Epochs}
	}
	seen := map[string]bool{}
	for _, x := range r.Rows {
		if x.Method == "" || seen[x.Method] {
			continue
		}
		seen[x.Method] = true
		css, ds := []int{x.ClusterSize}, []float64{x.GateDecay}
		if byClusters && x.Kind == KindHyper {
			css = r.ClusterGrid
		}
		if byDecay && r.isBasis(x.Method) {
			ds = r.DecayGrid
		}
		for _, cs := range css {
			for _, d := range ds {
				for _, ep := range eps {
					fmt.Fprintf(b, "| %s | ", x.Method)
					if byEpochs {
						fmt.Fprintf(b, "%d | ", ep)
					}
					if byClusters {
						b.WriteString(gridCell(x.Kind == KindHyper, fmt.Sprint(cs)))
					}
					if byDecay {
						b.WriteString(gridCell(r.isBasis(x.Method), fmt.Sprint(d)))
					}
					for _, lr := range r.LRs {
						fmt.Fprintf(b, "%.4f | ", x.LRVal[DecayKey(ClusterKey(GridKey(lr, ep, r.EpochGrid), cs, css), d, ds)])
					}
					b.WriteString(gridChoice(x) + " |\n")
				}
			}
		}
	}
}

// gridCell is a grid table's cell: the value where the method has that
// dimension, else a dash.
func gridCell(on bool, v string) string {
	if on {
		return v + " | "
	}
	return "- | "
}

// isBasis reports whether the method named name is a gated basis.
func (r *Result) isBasis(name string) bool {
	for _, m := range r.Methods {
		if m.Name == name {
			return m.Basis
		}
	}
	return false
}

// gridChoice names a row's point of the grid: its rate, and its epochs,
// cluster size and gate decay when they were chosen with it.
func gridChoice(x Row) string {
	s := fmt.Sprint(x.LR)
	if x.Epochs > 0 {
		s += fmt.Sprintf(", %d epochs", x.Epochs)
	}
	if x.ClusterSize > 0 {
		s += fmt.Sprintf(", clusters of %d", x.ClusterSize)
	}
	if x.GateDecay > 0 {
		s += fmt.Sprintf(", gate decay %g", x.GateDecay)
	}
	return s
}
