package adaptrun

import (
	"fmt"
	"slices"
	"strings"
)

// likeForLikePairs are the primary's groupings and the LoRA baseline's
// that serve alike: neither gated, gated, gated and self-checked.
var likeForLikePairs = [][2]string{
	{GroupUngated, GroupStatic},
	{GroupOnline, GroupStaticGated},
	{GroupChecked, GroupStaticChecked},
}

// likeForLike pairs the primary method's served forms with the same forms
// of the best baseline's method where it has them (a LoRA's static rows),
// behind the adapters' own gates and behind each shared gate: per seed the
// paired difference with its interval, and how many lie below zero. The
// headline comparison (Summary's VsBest) pairs the primary's gated online
// row with the baseline's own row whatever its gating; these lines say
// what each like-for-like pair reads.
func (r *Result) likeForLike(primary string, best int) []string {
	if best < 0 || r.Rows[best].Method == "" {
		return nil
	}
	bm := r.Rows[best].Method
	var gates []string
	for _, x := range r.Rows {
		if !slices.Contains(gates, x.Gate) {
			gates = append(gates, x.Gate)
		}
	}
	var out []string
	for _, pg := range likeForLikePairs {
		for _, gate := range gates {
			ai := find(r.Rows, func(x Row) bool { return x.Method == primary && x.Grouping == pg[0] && x.Gate == gate })
			bi := find(r.Rows, func(x Row) bool { return x.Method == bm && x.Grouping == pg[1] && x.Gate == gate })
			if ai < 0 || bi < 0 {
				continue
			}
			a, b := r.Rows[ai], r.Rows[bi]
			n := min(len(a.Test), len(b.Test))
			below := 0
			var seeds []string
			for s := range n {
				if len(a.Test[s].Loss) != len(b.Test[s].Loss) {
					return append(out, fmt.Sprintf("  like for like, %s minus %s: seed %d scored other windows", pg[0], pg[1], s+1))
				}
				iv := PairedBootstrap(a.Test[s], b.Test[s], r.Bootstrap, uint64(1000+s))
				if iv.Hi < 0 {
					below++
				}
				seeds = append(seeds, fmt.Sprintf("%+.4f [%+.4f, %+.4f]", iv.Mean, iv.Lo, iv.Hi))
			}
			behind := ""
			if gate != "" {
				behind = " behind the gate every method shares (" + gate + ")"
			}
			state := "MISSED"
			if n > 0 && below >= 2 && below >= (n+1)/2 {
				state = "MET"
			}
			out = append(out, fmt.Sprintf("  like for like, %s minus %s%s: %s, %d of %d seeds below zero (%s)",
				pg[0], pg[1], behind, state, below, n, strings.Join(seeds, "; ")))
		}
	}
	return out
}
