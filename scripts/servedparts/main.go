// Command servedparts takes apart the served difference between two
// methods of adapt bench results (e.g. the gated basis's online-checked row
// and the LoRA's static-checked row) over the same test windows, seed by
// seed: which windows each method adapted (its served loss differs from
// the base model's), the share of A minus B that each part contributes
// (nats per scored token of all windows), and, for the windows only one
// method adapted, what each method's ungated update does there against the
// base model. It shows whether a lead comes from better updates where both
// adapt or from adapting where the other keeps the base model.
//
//	go run ./scripts/servedparts A.json SERVED_A UNGATED_A B.json SERVED_B UNGATED_B
//
// e.g. basis.json online-checked online-ungated lora.json static-checked static.
// Groupings take GROUPING@FEATURES for rows behind a shared gate.
package main

import (
	"fmt"
	"math"
	"os"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

// tol is the largest difference (nats, summed over a window's scored
// tokens) read as the base model's own loss: the base row and a kept-base
// window of an adapter row run different kernels, which differ in float
// rounding only.
const tol = 1e-3

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: servedparts A.json SERVED_A UNGATED_A B.json SERVED_B UNGATED_B")
		os.Exit(2)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "servedparts:", err)
		os.Exit(1)
	}
}

type side struct {
	served, ungated adaptrun.Row
	base            adaptrun.Scores
}

func load(f, served, ungated string) (side, error) {
	res, err := adaptrun.ReadJSON(f)
	if err != nil {
		return side{}, err
	}
	var s side
	var ok [3]bool
	for _, r := range res.Rows {
		switch {
		case r.Role == adaptrun.RoleBase:
			s.base, ok[0] = r.Test[0], true
		case r.Method != "" && r.Matches(served):
			s.served, ok[1] = r, true
		case r.Method != "" && r.Matches(ungated):
			s.ungated, ok[2] = r, true
		}
	}
	if ok != [3]bool{true, true, true} {
		return s, fmt.Errorf("%s: no base row, or no trained row of grouping %q or %q", f, served, ungated)
	}
	return s, nil
}

func run(args []string) error {
	a, err := load(args[0], args[1], args[2])
	if err != nil {
		return err
	}
	b, err := load(args[3], args[4], args[5])
	if err != nil {
		return err
	}
	if len(a.base.Loss) != len(b.base.Loss) {
		return fmt.Errorf("%d and %d test windows: not the same windows", len(a.base.Loss), len(b.base.Loss))
	}
	fmt.Printf("A: %s (%s)\nB: %s (%s)\n", a.served.Name, args[1], b.served.Name, args[4])
	seeds := min(len(a.served.Test), len(b.served.Test), len(a.ungated.Test), len(b.ungated.Test))
	base, n := a.base.Loss, a.base.N
	total := 0
	for _, x := range n {
		total += x
	}
	for s := range seeds {
		as, bs := a.served.Test[s].Loss, b.served.Test[s].Loss
		au, bu := a.ungated.Test[s].Loss, b.ungated.Test[s].Loss
		adapted := func(l []float64, i int) bool { return math.Abs(l[i]-base[i]) > tol }
		parts := []struct {
			name string
			in   func(i int) bool
		}{
			{"both adapted", func(i int) bool { return adapted(as, i) && adapted(bs, i) }},
			{"A only", func(i int) bool { return adapted(as, i) && !adapted(bs, i) }},
			{"B only", func(i int) bool { return !adapted(as, i) && adapted(bs, i) }},
			{"neither", func(i int) bool { return !adapted(as, i) && !adapted(bs, i) }},
		}
		var diff float64
		for i := range base {
			diff += as[i] - bs[i]
		}
		fmt.Printf("seed %d: A minus B %+.4f nats/token\n", s+1, diff/float64(total))
		for _, p := range parts {
			var d, gu, gb float64
			var w, tok int
			for i := range base {
				if p.in(i) {
					d += as[i] - bs[i]
					gu += au[i] - base[i]
					gb += bu[i] - base[i]
					w++
					tok += n[i]
				}
			}
			fmt.Printf("  %-12s %4d windows: contributes %+.4f", p.name, w, d/float64(total))
			if tok > 0 && (p.name == "A only" || p.name == "B only") {
				fmt.Printf("; there, ungated against the base: A %+.3f, B %+.3f nats/token", gu/float64(tok), gb/float64(tok))
			}
			fmt.Println()
		}
	}
	return nil
}
