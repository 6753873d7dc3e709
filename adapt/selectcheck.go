package adapt

import (
	"fmt"
	"math"
	"slices"
)

// selectCheck is the self-check widened to several candidates (Meta.Select,
// online plans): every sequence the gate lets through is scored under the
// update of each of its near training centroids (near[i], nearest first)
// and gets the one whose update predicts its own checked tokens best, or the
// base model (cluster -1) where that one does not beat it, as selfCheck
// decides for one (one stage: Meta.Validate refuses a staged check with a
// selection). It returns what selfCheck returns: with pp and a head-only
// update, each sequence's per-position losses under the decision, else nil.
func (p *Plan) selectCheck(seqs [][]int32, pp *promptPass, near [][]int) ([][]float32, error) {
	if len(near) != len(p.Cluster) {
		return nil, fmt.Errorf("adapt: select: %d candidate lists for %d sequences", len(near), len(p.Cluster))
	}
	open := slices.Clone(p.Cluster)
	depth := 0
	for i, nb := range near {
		if open[i] >= 0 {
			depth = max(depth, len(nb))
		}
	}
	choice := make([]int, len(open))
	best := make([]float64, len(open))
	for i := range choice {
		choice[i], best[i] = -1, math.Inf(1)
	}
	base, adapted := map[int][]float32{}, map[int][]float32{}
	per, partial := false, map[int]bool{}
	for d := range depth {
		for i := range p.Cluster {
			p.Cluster[i] = -1
			if open[i] >= 0 && d < len(near[i]) {
				p.Cluster[i] = near[i][d]
			}
		}
		idx, check, from := p.checkSet(seqs)
		if len(check) == 0 {
			continue
		}
		cl, err := p.checkLosses(seqs, pp, idx, check, from, CheckStages{})
		if err != nil {
			return nil, err
		}
		per = cl.per
		for j, i := range idx {
			base[i] = cl.base[j]
			if a := sumLosses(cl.adapted[j]); a < best[i] {
				best[i], choice[i], adapted[i] = a, near[i][d], cl.adapted[j]
				partial[i] = from[j] > 0
			}
		}
	}
	kept := map[int][]float32{}
	for i := range p.Cluster {
		p.Cluster[i] = -1
		if choice[i] >= 0 && keeps(CheckStages{}, base[i], adapted[i]) {
			p.Cluster[i] = choice[i]
			if !partial[i] {
				kept[i] = adapted[i]
			}
		}
	}
	if !per {
		return nil, nil
	}
	for i := range partial {
		if p.Cluster[i] < 0 || !partial[i] {
			delete(partial, i)
		}
	}
	return pp.decided(kept, partial), nil
}
