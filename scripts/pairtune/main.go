// Command pairtune pairs the online rows of an adapt bench result with
// the untuned and tuned test scores of an adapt tune result over the same
// windows: each row minus each, nats/token, with a paired bootstrap 95%
// interval (adaptrun.PairedBootstrap, 1000 resamples). Both sides are
// scored by the same evaluator (the training path), so it compares two
// adapters without the runtime's serving in between.
//
//	go run ./scripts/pairtune BENCH.json.gz TUNE.json
//
// Given two tune results instead (TUNE_A.json TUNE_B.json, e.g. a gated
// basis and its LoRA as a zero-gate basis), it pairs A's untuned and
// tuned test scores with B's.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pairtune BENCH.json[.gz]|TUNE_A.json TUNE.json")
		os.Exit(2)
	}
	if strings.HasSuffix(os.Args[1], "tune.json") {
		pairTunes(os.Args[1], os.Args[2])
		return
	}
	res, err := adaptrun.ReadJSON(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tr := readTune(os.Args[2])
	for _, r := range res.Rows {
		if r.Grouping != adaptrun.GroupChecked && r.Grouping != adaptrun.GroupOnline || len(r.Test) == 0 {
			continue
		}
		for _, o := range []struct {
			name string
			s    adaptrun.Scores
		}{{"the tuned run's untuned gates", tr.CheckedScores}, {"its tuned gates", tr.TunedScores}} {
			if len(o.s.Loss) != len(r.Test[0].Loss) {
				fmt.Fprintf(os.Stderr, "%s: %d windows, the tune result %d: not the same windows\n", r.Name, len(r.Test[0].Loss), len(o.s.Loss))
				os.Exit(1)
			}
			iv := adaptrun.PairedBootstrap(r.Test[0], o.s, 1000, 3)
			fmt.Printf("%s (%s) minus %s: %+.4f [%+.4f, %+.4f]\n", r.Name, r.Grouping, o.name, iv.Mean, iv.Lo, iv.Hi)
		}
	}
}

// readTune reads an adapt tune result or exits.
func readTune(f string) adaptrun.TuneResult {
	var tr adaptrun.TuneResult
	b, err := os.ReadFile(f)
	if err == nil {
		err = json.Unmarshal(b, &tr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return tr
}

// pairTunes prints tune result a's untuned and tuned test scores minus b's.
func pairTunes(fa, fb string) {
	a, b := readTune(fa), readTune(fb)
	for _, x := range []struct {
		name string
		a, b adaptrun.Scores
	}{{"untuned", a.CheckedScores, b.CheckedScores}, {"tuned", a.TunedScores, b.TunedScores}} {
		if len(x.a.Loss) != len(x.b.Loss) {
			fmt.Fprintf(os.Stderr, "%d and %d windows: not the same windows\n", len(x.a.Loss), len(x.b.Loss))
			os.Exit(1)
		}
		iv := adaptrun.PairedBootstrap(x.a, x.b, 1000, 3)
		fmt.Printf("%s: %s minus %s: %+.4f [%+.4f, %+.4f]\n", x.name, fa, fb, iv.Mean, iv.Lo, iv.Hi)
	}
}
