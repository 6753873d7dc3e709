// Command pairseeds compares one row of an adapt bench result with a row
// of another (or the same) result over the same test windows, seed by
// seed: A's seed s minus B's seed s, nats/token, with a paired bootstrap
// 95% interval (adaptrun.PairedBootstrap, 1000 resamples), and how many
// seeds' intervals lie below zero. Results of different test windows
// (told by each window's domain and bytes) are refused. Where the two
// results ran different numbers of seeds, the seeds both have are
// compared. Rows are picked by
// grouping (e.g. online-checked, static-checked) among the rows of trained
// methods; GROUPING@FEATURES picks the row behind the gate every method
// shares in that feature space (adapt bench --shared-gates), e.g.
// online-checked@hidden. METHOD:GROUPING picks among the rows of the methods
// whose name in the result contains METHOD (e.g. "per cluster:selected@embed+hidden")
// where a result holds several methods with that grouping.
//
//	go run ./scripts/pairseeds A.json.gz [METHOD:]GROUPING_A B.json.gz [METHOD:]GROUPING_B
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: pairseeds A.json[.gz] GROUPING_A B.json[.gz] GROUPING_B")
		os.Exit(2)
	}
	a, ra, err := pick(os.Args[1], os.Args[2])
	if err == nil {
		var b adaptrun.Row
		var rb *adaptrun.Result
		if b, rb, err = pick(os.Args[3], os.Args[4]); err == nil {
			if err = sameWindows(ra, rb); err == nil {
				err = compare(a, b)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pairseeds:", err)
		os.Exit(1)
	}
}

// sameWindows refuses two results whose test windows differ: pairing
// window by window needs the same windows in the same order, which two
// runs of one windows file (or of files cut alike) have. Each window's
// domain and byte count stand for it.
func sameWindows(a, b *adaptrun.Result) error {
	if !slices.Equal(a.TestDom, b.TestDom) || !slices.Equal(a.TestBytes, b.TestBytes) || !slices.Equal(a.TestDomains, b.TestDomains) {
		return fmt.Errorf("the two results' test windows differ (domains or bytes): not the same windows, nothing to pair")
	}
	return nil
}

// pick is the one trained row of file f with grouping g (of a method whose
// name contains the part before a colon in g, if any), and f's result.
func pick(f, g string) (adaptrun.Row, *adaptrun.Result, error) {
	res, err := adaptrun.ReadJSON(f)
	if err != nil {
		return adaptrun.Row{}, nil, err
	}
	method, g, byMethod := strings.Cut(g, ":")
	if !byMethod {
		g, method = method, ""
	}
	var found []adaptrun.Row
	for _, r := range res.Rows {
		if r.Method != "" && (!byMethod || strings.Contains(r.Method, method)) && r.Matches(g) {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		return adaptrun.Row{}, nil, fmt.Errorf("%s: %d trained rows of grouping %q (method %q), want one", f, len(found), g, method)
	}
	return found[0], res, nil
}

// compare prints a minus b per seed and the count of intervals below zero.
func compare(a, b adaptrun.Row) error {
	n := min(len(a.Test), len(b.Test))
	if n == 0 {
		return fmt.Errorf("%d and %d seeds: nothing to pair", len(a.Test), len(b.Test))
	}
	fmt.Printf("%s (%s)\nminus %s (%s), test nats/token per seed:\n", a.Name, a.Grouping, b.Name, b.Grouping)
	if len(a.Test) != len(b.Test) {
		fmt.Printf("  (%d and %d seeds: the first %d paired)\n", len(a.Test), len(b.Test), n)
	}
	below := 0
	for s := range n {
		if len(a.Test[s].Loss) != len(b.Test[s].Loss) {
			return fmt.Errorf("seed %d: %d and %d windows: not the same windows", s+1, len(a.Test[s].Loss), len(b.Test[s].Loss))
		}
		iv := adaptrun.PairedBootstrap(a.Test[s], b.Test[s], 1000, 3)
		if iv.Hi < 0 {
			below++
		}
		fmt.Printf("  seed %d: %+.4f - %+.4f = %+.4f [%+.4f, %+.4f]\n", s+1, a.Test[s].Mean(nil), b.Test[s].Mean(nil), iv.Mean, iv.Lo, iv.Hi)
	}
	fmt.Printf("intervals below zero: %d of %d seeds\n", below, n)
	return nil
}
