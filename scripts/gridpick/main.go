// Command gridpick chooses, for every trained method, among adapt bench
// results that trained it at different points of one grid (e.g. one run at
// two epochs and one at four, each with its rate chosen on validation):
// the result whose chosen point has the least first-seed validation loss.
// It prints every result's choice and its validation loss, and the winner,
// so that a grid split over several runs is chosen as one. The results must
// score the same windows (a run whose windows file also holds the
// pretraining domains' validation split, which only --check-slacks reads,
// scores the same ones as a run before that split was cut).
//
//	go run ./scripts/gridpick A.json.gz B.json.gz ...
package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gridpick A.json[.gz] B.json[.gz] ...")
		os.Exit(2)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gridpick:", err)
		os.Exit(1)
	}
}

// point is one result's choice for a method.
type point struct {
	file     string
	lr       float64
	epochs   int
	clusters int     // training windows a cluster; 0: the batch size
	decay    float64 // the gate network's weight decay
	val      float64
}

func run(files []string) error {
	byMethod := map[string][]point{}
	var order []string
	var first *adaptrun.Result
	for _, f := range files {
		res, err := adaptrun.ReadJSON(f)
		if err != nil {
			return err
		}
		if first == nil {
			first = res
		} else if !maps.Equal(scored(first.Windows), scored(res.Windows)) || first.T != res.T || first.Prompt != res.Prompt {
			return fmt.Errorf("%s scores other windows than %s (%v, T %d against %v, T %d)", f, files[0], res.Windows, res.T, first.Windows, first.T)
		}
		seen := map[string]bool{}
		for _, r := range res.Rows {
			if r.Method == "" || seen[r.Method] {
				continue
			}
			seen[r.Method] = true // a method's first row carries its choice
			ep := r.Epochs
			if ep == 0 {
				ep = res.Opts.Epochs
			}
			key := adaptrun.ClusterKey(adaptrun.GridKey(r.LR, ep, res.EpochGrid), r.ClusterSize, res.ClusterGrid)
			v, ok := r.LRVal[adaptrun.DecayKey(key, r.GateDecay, res.DecayGrid)]
			if !ok {
				return fmt.Errorf("%s: %s has no validation loss at its chosen rate %g", f, r.Method, r.LR)
			}
			if byMethod[r.Method] == nil {
				order = append(order, r.Method)
			}
			// A size or decay the run did not choose is the method's own.
			p := point{f, r.LR, ep, r.ClusterSize, r.GateDecay, v}
			if i := slices.IndexFunc(res.Methods, func(m adaptrun.Method) bool { return m.Name == r.Method }); i >= 0 {
				if len(res.ClusterGrid) < 2 {
					p.clusters = res.Methods[i].ClusterSize
				}
				if len(res.DecayGrid) < 2 {
					p.decay = res.Methods[i].GateDecay
				}
			}
			byMethod[r.Method] = append(byMethod[r.Method], p)
		}
	}
	for _, m := range order {
		ps := byMethod[m]
		best := slices.MinFunc(ps, func(a, b point) int {
			return cmpVal(a.val, b.val)
		})
		fmt.Printf("%s\n", m)
		for _, p := range ps {
			mark := " "
			if p == best {
				mark = "*"
			}
			cs := "batch-sized clusters"
			if p.clusters > 0 {
				cs = fmt.Sprintf("clusters of %d", p.clusters)
			}
			if p.decay > 0 {
				cs += fmt.Sprintf(", gate decay %g", p.decay)
			}
			fmt.Printf("  %s %d epochs, rate %g, %s: validation %.4f  (%s)\n", mark, p.epochs, p.lr, cs, p.val, p.file)
		}
	}
	return nil
}

// scored is a result's window counts without the pretraining domains'
// validation split, which no grid point is chosen on.
func scored(w map[string]int) map[string]int {
	out := maps.Clone(w)
	delete(out, "harm-validation")
	return out
}

// cmpVal orders validation losses, NaN last; ties keep the earlier file.
func cmpVal(a, b float64) int {
	switch {
	case math.IsNaN(a) && !math.IsNaN(b):
		return 1
	case math.IsNaN(b) && !math.IsNaN(a):
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
