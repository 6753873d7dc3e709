// Command checkcurve replays the self-check of a self-checked row of an
// adapt bench result with other slacks: a window keeps its update where
// the update changes its prompt's loss by less than +slack nats a prompt
// token (the benchmark's own check is slack 0: the update must lower it).
// It needs the row's recorded prompt-loss differences (Row.Check, in
// results from 2026-12-06 on) and the gated row it was checked from (the
// same method and gate, without the check: online for online-checked,
// static-gated for static-checked). At slack 0 the replay must give the
// row's own losses exactly, window by window, or the command fails.
//
// For each slack it prints the share of test windows adapted, the change
// in test nats/token against the base model per seed, and the perplexity
// change on the pretraining and held-out domains (seeds pooled). Given two
// results, it also prints A minus B per seed at each slack, one rule for
// both, with paired bootstrap 95% intervals.
//
//	go run ./scripts/checkcurve [-slacks 0,0.01,0.02] A.json.gz SPEC_A [B.json.gz SPEC_B]
//
// SPEC is GROUPING or GROUPING@FEATURES as in pairseeds, e.g.
// online-checked@embed+hidden or static-checked@embed+hidden.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/chameleon-llm/chameleon/adaptrun"
)

func main() {
	slacks := flag.String("slacks", "-0.02,0,0.01,0.02,0.05,0.1,0.2,inf", "slacks, nats a prompt token, comma-separated (inf: no check)")
	flag.Parse()
	args := flag.Args()
	if len(args) != 2 && len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: checkcurve [-slacks LIST] A.json[.gz] SPEC_A [B.json[.gz] SPEC_B]")
		os.Exit(2)
	}
	if err := run(*slacks, args); err != nil {
		fmt.Fprintln(os.Stderr, "checkcurve:", err)
		os.Exit(1)
	}
}

func run(list string, args []string) error {
	var ms []float64
	for _, f := range strings.Split(list, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(v) {
			return fmt.Errorf("-slacks %q: want numbers (or inf), comma-separated", list)
		}
		ms = append(ms, v)
	}
	var cs []*curve
	for i := 0; i < len(args); i += 2 {
		c, err := load(args[i], args[i+1])
		if err != nil {
			return err
		}
		cs = append(cs, c)
		c.print(ms)
	}
	if len(cs) == 2 {
		return pair(cs[0], cs[1], ms)
	}
	return nil
}

// curve is what a self-checked row needs to be replayed.
type curve struct {
	name                 string
	res                  *adaptrun.Result
	checked, gated, base adaptrun.Row
}

// gatedOf is the grouping a self-checked grouping was checked from.
var gatedOf = map[string]string{adaptrun.GroupChecked: adaptrun.GroupOnline, adaptrun.GroupStaticChecked: adaptrun.GroupStaticGated}

func load(file, spec string) (*curve, error) {
	res, err := adaptrun.ReadJSON(file)
	if err != nil {
		return nil, err
	}
	g, gate, _ := strings.Cut(spec, "@")
	if gatedOf[g] == "" {
		return nil, fmt.Errorf("%s: %q is not a self-checked grouping (%s or %s)", file, g, adaptrun.GroupChecked, adaptrun.GroupStaticChecked)
	}
	c := &curve{name: file + " " + spec, res: res}
	n := 0
	for _, r := range res.Rows {
		if r.Method != "" && r.Matches(spec) {
			c.checked = r
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%s: %d trained rows of grouping %q, want one", file, n, spec)
	}
	for _, r := range res.Rows {
		switch {
		case r.Method == c.checked.Method && r.Grouping == gatedOf[g] && r.Gate == gate:
			c.gated = r
		case r.Role == adaptrun.RoleBase:
			c.base = r
		}
	}
	if c.gated.Grouping == "" || c.base.Grouping == "" {
		return nil, fmt.Errorf("%s: no %s row of %s, or no base row", file, gatedOf[g], c.checked.Method)
	}
	if len(c.checked.Check) != len(c.checked.Test) || len(c.checked.HarmCheck) != len(c.checked.Harm) {
		return nil, fmt.Errorf("%s: %s has no recorded self-checks (a result from before 2026-12-06?)", file, spec)
	}
	c.name = c.checked.Name
	// Slack 0 is the benchmark's own check: it must give the row's losses.
	for s := range c.checked.Test {
		for _, x := range [][2]adaptrun.Scores{{c.replay(s, 0, false), c.checked.Test[s]}, {c.replay(s, 0, true), c.checked.Harm[s]}} {
			for i := range x[0].Loss {
				if x[0].Loss[i] != x[1].Loss[i] {
					return nil, fmt.Errorf("%s, seed %d window %d: replayed at slack 0, loss %g; the row has %g", spec, s+1, i, x[0].Loss[i], x[1].Loss[i])
				}
			}
		}
	}
	return c, nil
}

// replay is seed s's losses under slack m on the test (or harm) windows:
// the gated row's where the update's prompt loss rose by less than m a
// token, the base model's elsewhere.
func (c *curve) replay(s int, m float64, harm bool) adaptrun.Scores {
	gated, base, check := c.gated.Test[s], c.base.Test[0], c.checked.Check[s]
	if harm {
		gated, base, check = c.gated.Harm[s], c.base.Harm[0], c.checked.HarmCheck[s]
	}
	out := adaptrun.Scores{Loss: make([]float64, len(base.Loss)), N: base.N}
	for i := range out.Loss {
		out.Loss[i] = base.Loss[i]
		if check.Loss[i] < m*float64(check.N[i]) {
			out.Loss[i] = gated.Loss[i]
		}
	}
	return out
}

// adapted is the share of seed s's test windows that keep an update under
// slack m: open gate (the gated row differs from the base) and check.
func (c *curve) adapted(s int, m float64) float64 {
	g, b, ch := c.gated.Test[s], c.base.Test[0], c.checked.Check[s]
	k := 0
	for i := range g.Loss {
		if g.Loss[i] != b.Loss[i] && ch.Loss[i] < m*float64(ch.N[i]) {
			k++
		}
	}
	return float64(k) / float64(len(g.Loss))
}

// harmPct is the perplexity change (%) on the harm windows of role, seeds
// pooled, under slack m.
func (c *curve) harmPct(m float64, role string) float64 {
	var dl float64
	var n int
	r := c.res
	for s := range c.checked.Harm {
		got, base := c.replay(s, m, true), c.base.Harm[0]
		for i := range got.Loss {
			if r.Roles[r.HarmDomains[r.HarmDom[i]]] == role {
				dl += got.Loss[i] - base.Loss[i]
				n += got.N[i]
			}
		}
	}
	return 100 * (math.Exp(dl/float64(max(n, 1))) - 1)
}

func (c *curve) print(ms []float64) {
	fmt.Printf("%s\n\n| slack | test windows adapted | test, against the base (per seed) | pretraining ppl | held-out ppl |\n|---|---|---|---|---|\n", c.name)
	for _, m := range ms {
		var ad, per []string
		for s := range c.checked.Test {
			ad = append(ad, fmt.Sprintf("%.0f%%", 100*c.adapted(s, m)))
			per = append(per, fmt.Sprintf("%+.4f", c.replay(s, m, false).Mean(nil)-c.base.Test[0].Mean(nil)))
		}
		fmt.Printf("| %g | %s | %s | %+.2f%% | %+.2f%% |\n", m, strings.Join(ad, ", "), strings.Join(per, ", "),
			c.harmPct(m, adaptrun.RolePretrain), c.harmPct(m, adaptrun.RoleHeldOut))
	}
	fmt.Println()
}

// pair prints a minus b per seed at each slack, one rule for both.
func pair(a, b *curve, ms []float64) error {
	if len(a.base.Test[0].Loss) != len(b.base.Test[0].Loss) {
		return fmt.Errorf("the two results scored different test windows")
	}
	for i, l := range a.base.Test[0].Loss {
		if l != b.base.Test[0].Loss[i] {
			return fmt.Errorf("the two results' base models differ on test window %d (%g, %g)", i, l, b.base.Test[0].Loss[i])
		}
	}
	n := min(len(a.checked.Test), len(b.checked.Test))
	fmt.Printf("A minus B, nats/token, the same slack for both (negative: A better)\nA: %s\nB: %s\n\n| slack | per seed | below zero |\n|---|---|---|\n", a.name, b.name)
	for _, m := range ms {
		var per []string
		below := 0
		for s := range n {
			iv := adaptrun.PairedBootstrap(a.replay(s, m, false), b.replay(s, m, false), 1000, uint64(s+1))
			per = append(per, fmt.Sprintf("%+.4f [%+.4f, %+.4f]", iv.Mean, iv.Lo, iv.Hi))
			if iv.Hi < 0 {
				below++
			}
		}
		fmt.Printf("| %g | %s | %d of %d |\n", m, strings.Join(per, ", "), below, n)
	}
	return nil
}
