package adaptrun

import (
	"fmt"
	"io"
	"math"
	"slices"
)

// Versus pairs two adapters' served scores of the same windows (ScoreServed
// of a and of b over one split, one model): the result's Base is a's adapted
// scores and its Adapted b's, so its Rows read b minus a per domain and per
// role, paired over the windows, and Kept says where b adapted. It refuses
// scores of different windows: another split, other domains or token
// counts, or base-model losses that differ by more than float rounding.
func Versus(a, b *Served) (*Served, error) {
	switch {
	case a.Split != b.Split:
		return nil, fmt.Errorf("adaptrun: versus: splits %q and %q differ", a.Split, b.Split)
	case !slices.Equal(a.Domains, b.Domains):
		return nil, fmt.Errorf("adaptrun: versus: the %s split's windows differ (%d and %d windows, or their domains)", a.Split, len(a.Domains), len(b.Domains))
	}
	for i := range a.Domains {
		if a.Base.N[i] != b.Base.N[i] || a.Adapted.N[i] != b.Adapted.N[i] {
			return nil, fmt.Errorf("adaptrun: versus: %s window %d scores %d and %d tokens", a.Split, i, a.Base.N[i], b.Base.N[i])
		}
		if d := math.Abs(a.Base.Loss[i] - b.Base.Loss[i]); d > versusTol*max(1, float64(a.Base.N[i])) {
			return nil, fmt.Errorf("adaptrun: versus: %s window %d: the base model's loss differs by %.3g nats between the two runs (not the same windows or model)", a.Split, i, d)
		}
	}
	return &Served{Split: a.Split, Domains: a.Domains, Base: a.Adapted, Adapted: b.Adapted, Kept: b.Kept}, nil
}

// versusTol is the largest difference of the base model's loss per scored
// token that Versus reads as rounding between two runs over the same
// windows.
const versusTol = 1e-4

// WriteVersusMarkdown writes rows of a Versus pairing as a Markdown table,
// a and b naming the two adapters.
func WriteVersusMarkdown(w io.Writer, a, b string, rows []ServedRow) {
	fmt.Fprintf(w, "| domain | windows | adapted by %s | %s ppl | %s ppl | change | %s - %s, nats/token [95%% interval] |\n", b, a, b, b, a)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %.2f | %+.2f%% | %+.4f [%+.4f, %+.4f] |\n",
			r.Name, r.Windows, r.Kept, r.BasePPL, r.AdaptedPPL, r.ChangePct, r.Diff.Mean, r.Diff.Lo, r.Diff.Hi)
	}
}
